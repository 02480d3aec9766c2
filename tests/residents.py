"""The residents whose personal data the tests send through the platform, and the grep that
proves no service log ever wrote them down (issue 7). `tests/conftest.py` runs `sightings`
over every stack's logs when the whole session ends and fails the run on any hit."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from events.personal import Kind, mask
from services.simulator import PARTIES

_rng = random.Random()  # noqa: S311 - test data, fresh each session so greps find only ours

#: (name, phone or None) of every resident a test or the simulator names: drawn fresh for this
#: session or fixed by the simulator; a_resident() adds to it
RESIDENTS: list[tuple[str, str | None]] = list(PARTIES)


def a_resident(surname: str = "欧阳") -> tuple[str, str]:
    """A resident unusual enough that no other text contains their name or phone."""
    resident = (surname + "".join(_rng.choice("澜珂瑾璇骁翊") for _ in range(2)),
                f"139{_rng.randrange(10**8):08d}")
    RESIDENTS.append(resident)
    return resident


@dataclass(frozen=True)
class Sighting:
    path: Path
    line: int
    said: str  # masked: the failure report must not repeat what it found

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.said}"


def service_logs(root: Path) -> list[Path]:
    """Every log a RunningStack under `root` wrote: its stack.out and logs/*.log."""
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and (p.name == "stack.out" or (p.suffix == ".log" and p.parent.name == "logs")))


def sightings(root: Path, residents: list[tuple[str, str | None]]) -> list[Sighting]:
    """Each line of each service log under `root` that holds a resident's name or phone."""
    said: list[tuple[Kind, str]] = [(kind, text) for name, phone in residents
                                    for kind, text in (("name", name), ("phone", phone))
                                    if text]
    found = []
    for path in service_logs(root):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                found += [Sighting(path, number, mask(kind, text))
                          for kind, text in said if text in line]
    return found
