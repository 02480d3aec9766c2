"""Fault points: where a fault-injection harness may make a process die abruptly.

`GRIDGOV_FAULT` arms them: comma-separated `who:point=trigger` items, where `who` is the
process (`ingest`, or a projection's name; `*` for any), `point` one of `POINTS` (`*` for
any), and `trigger` either a chance per passage (`0.02`) or `#N` (the Nth passage in this
process's life). `GRIDGOV_FAULT=@/path` reads the same text from that file at every passage,
so a harness can draw a new point while the processes run, and disarm them all by emptying it.
A process that reaches an armed point leaves with `os._exit(FAULT_EXIT)`: no cleanup, no
flush, no transaction commit — as kill -9 would, but at a place in the code we chose.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

FAULT_EXIT = 86

POINTS = {
    # ingest: the broker acknowledged (acks=all), the first receipt is not stored yet
    "after_ack_before_receipt",
    # ingest: the receipt is stored, the 201 never leaves
    "after_receipt_before_answer",
    # runner: poison records are in the dead-letter topic, the batch is not committed
    "after_dead_letter",
    # runner: the read model and next offsets are written, the transaction is not committed
    "after_write_before_commit",
    # runner: the batch is committed; faust has not committed its own offsets
    "after_commit",
}


class FaultSpecError(ValueError):
    """GRIDGOV_FAULT names a point that does not exist or a trigger that cannot be read."""


@dataclass(frozen=True)
class Fault:
    who: str
    point: str
    chance: float = 0.0
    nth: int | None = None

    def covers(self, who: str, point: str) -> bool:
        return self.who in ("*", who) and self.point in ("*", point)


def parse(spec: str) -> tuple[Fault, ...]:
    faults = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        target, _, trigger = item.partition("=")
        who, _, point = target.rpartition(":")
        who = who or "*"
        if point != "*" and point not in POINTS:
            raise FaultSpecError(f"no fault point {point!r}; there are {sorted(POINTS)}")
        try:
            if trigger.startswith("#"):
                faults.append(Fault(who, point, nth=int(trigger[1:])))
            else:
                chance = float(trigger or "1")
                if not 0 <= chance <= 1:
                    raise ValueError(chance)
                faults.append(Fault(who, point, chance=chance))
        except ValueError:
            raise FaultSpecError(f"{item!r}: a trigger is a chance in [0, 1] or #N") from None
    return tuple(faults)


class Faults:
    """The armed points of this process and how often each was passed."""

    def __init__(self, spec: str | None, rng: random.Random | None = None) -> None:
        self._file = Path(spec[1:]) if spec and spec.startswith("@") else None
        self._faults = () if self._file or not spec else parse(spec)
        self._seen: tuple[int, int, int] = (-1, -1, -1)
        self._passed: Counter[tuple[str, str]] = Counter()
        self._rng = rng or random.Random()  # noqa: S311 - chaos, not cryptography

    def armed(self) -> tuple[Fault, ...]:
        if self._file is None:
            return self._faults
        try:
            found = self._file.stat()
        except FileNotFoundError:
            return ()
        version = (found.st_ino, found.st_mtime_ns, found.st_size)
        if version != self._seen:  # a harness replaces the file to draw a new point
            self._seen, self._faults = version, parse(self._file.read_text(encoding="utf-8"))
        return self._faults

    def should_fail(self, who: str, point: str) -> bool:
        self._passed[(who, point)] += 1
        for fault in self.armed():
            if not fault.covers(who, point):
                continue
            if fault.nth is not None and self._passed[(who, point)] == fault.nth:
                return True
            if fault.nth is None and self._rng.random() < fault.chance:
                return True
        return False


_process: Faults | None = None


def reached(who: str, point: str) -> None:
    """Die here if GRIDGOV_FAULT says so; a no-op when it is not set."""
    global _process
    if _process is None:
        _process = Faults(os.environ.get("GRIDGOV_FAULT"))
    if _process.should_fail(who, point):
        os.write(2, f"gridgov fault: {who} exits at {point}\n".encode())
        os._exit(FAULT_EXIT)
