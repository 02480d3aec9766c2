"""The stack's processes as the operating system sees them: resident memory and CPU time."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.stack import RunningStack


@contextmanager
def scratch_home(name: str) -> Iterator[Path]:
    """Where a run's stack lives, made: a run leaves gigabytes (PostgreSQL's data, the logs),
    gone when it ends."""
    with tempfile.TemporaryDirectory(prefix=f"gridgov-{name}-",
                                     ignore_cleanup_errors=True) as scratch:
        home = Path(scratch) / "home"
        home.mkdir()
        yield home


def stack_processes(stack: RunningStack) -> dict[str, psutil.Process]:
    """Our services, and the broker and PostgreSQL's postmaster (its backends are its children)
    where the stack started them: an outside Kafka or PostgreSQL is not this machine's to see."""
    processes = {name: psutil.Process(pid) for name, pid in stack.info["pids"].items() if pid}
    if (pid_file := stack.pgdata / "postmaster.pid").exists():
        processes["postgres"] = psutil.Process(int(pid_file.read_text().split()[0]))
    return processes


def cpu_seconds(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """User + system time used so far by each process and its descendants; a reaped child
    (a PostgreSQL backend that has ended) counts in its parent's `children_*` times."""
    used = dict.fromkeys(processes, 0.0)
    for name, process in processes.items():
        try:
            family = [process, *process.children(recursive=True)]
        except psutil.Error:
            continue
        for member in family:
            try:
                t = member.cpu_times()
            except psutil.Error:
                continue
            used[name] += t.user + t.system + t.children_user + t.children_system
    return used


class CpuUsed:
    """The CPU each process used during a `with` block: what a row's latencies were competing
    with (the late publish → visible row was PostgreSQL's, at twice its share earlier)."""

    def __init__(self, processes: dict[str, psutil.Process]) -> None:
        self.processes = processes
        self.before: dict[str, float] = {}
        self.started = 0.0
        self.seconds: dict[str, float] = {}  # used during the block, by process
        self.elapsed = 0.0

    def __enter__(self) -> CpuUsed:
        self.before, self.started = cpu_seconds(self.processes), time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        after = cpu_seconds(self.processes)
        self.elapsed = time.perf_counter() - self.started
        self.seconds = {name: after[name] - self.before[name] for name in after}

    def busiest(self, per: float, digits: int = 0) -> str:
        """Each process's CPU divided by `per`, the busiest first: `postgres 0.30, …`."""
        shares = sorted(((name, s / per) for name, s in self.seconds.items()),
                        key=lambda item: -item[1])
        return ", ".join(f"{name} {share:,.{digits}f}" for name, share in shares
                         if round(share, digits))


@contextmanager
def consumers_paused(processes: dict[str, psutil.Process]) -> Iterator[None]:
    """The projectors and deciders stopped (SIGSTOP) for the block: ingest with the broker and
    PostgreSQL to itself, as on a machine of its own, where on 2 cores the consumers of what it
    sends compete for the same CPU. Keep the block short: past the 6 s session timeout their
    groups rebalance when they resume (and the runner's stored offsets make that harmless)."""
    held = [p for name, p in processes.items()
            if name.startswith("projector-") or name.endswith("decider")]
    for process in held:
        process.suspend()
    try:
        yield
    finally:
        for process in held:
            process.resume()


class Memory(threading.Thread):
    """Samples each process's resident memory once a second for the whole run: its peak, and
    its mean over any window (how much it grew during the soak)."""

    def __init__(self, processes: dict[str, psutil.Process]) -> None:
        super().__init__(daemon=True)
        self.processes = processes
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            sample = {}
            for name, process in self.processes.items():
                try:
                    sample[name] = process.memory_info().rss
                except psutil.Error:
                    pass
            self.samples.append((time.monotonic(), sample))
            time.sleep(1.0)

    def peak(self, name: str) -> int:
        return max((s.get(name, 0) for _, s in self.samples), default=0)

    def mean(self, name: str, since: float, until: float) -> float:
        return statistics.fmean([s[name] for t, s in self.samples
                                 if since <= t <= until and name in s] or [0])
