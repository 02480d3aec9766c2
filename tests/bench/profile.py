"""Where the time goes: py-spy samples of one process while a bench section runs.

Issue 9 asks, where a goal is out of reach, for a profile showing where the time goes.
`make bench` samples the ingest process during the singles and the chain projector while it
catches up on the county, and writes the heaviest frames to docs/PROFILES.md.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

PROFILES: list[tuple[str, int, Counter[str], Counter[str]]] = []  # what, samples, total, own
TOP = 30
#: how a process was started: on nearly every sample, so they say nothing
ENTRY = ("click/", "<frozen runpy>", "services/cli.py", "uvicorn/main.py", "uvicorn/server.py",
         "uvicorn/_compat.py", "asyncio/runners.py", "threading.py", "faust/cli", "mode/worker")


class Sampled:
    """py-spy recording `pid` for the `with` block (100 samples a second, idle excluded)."""

    def __init__(self, what: str, pid: int) -> None:
        self.what, self.pid = what, pid
        self.out = Path(tempfile.mkdtemp(prefix="gridgov-pyspy-")) / "samples.txt"
        self.spy: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sampled:
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if py_spy is not None:
            self.spy = subprocess.Popen(
                [py_spy, "record", "-p", str(self.pid), "-f", "raw", "-r", "100",
                 "--nonblocking", "-o", str(self.out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled, then exits
            self.spy.wait(60)
            if self.out.exists():
                PROFILES.append((self.what, *frames(self.out.read_text(encoding="utf-8"))))
        shutil.rmtree(self.out.parent, ignore_errors=True)  # its samples are in PROFILES now


def frames(collapsed: str) -> tuple[int, Counter[str], Counter[str]]:
    """Samples, and per frame the samples it was on the stack of (total) or on top of (own)."""
    total: Counter[str] = Counter()
    own: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, stack_frames = int(count), stack.split(";")
        samples += n
        own[stack_frames[-1]] += n
        for frame in set(stack_frames):
            if not any(entry in frame for entry in ENTRY):
                total[frame] += n
    return samples, total, own


def write(commit: str, machine: str) -> None:
    if not PROFILES:
        return
    written = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    text = (f"# Where the time goes\n\nWritten by `make bench` ({written} UTC, commit"
            f" {commit}; {machine}): py-spy samples (100/s, idle threads"
            " excluded) of one process while a section ran. *Total* is the share of samples a"
            " frame was on the stack of, *own* the share it was running itself.\n")
    for what, samples, total, own in PROFILES:
        text += f"\n## {what} ({samples:,} samples)\n\n| total | frame |\n|---|---|\n"
        text += "".join(f"| {n / samples:.0%} | `{f}` |\n" for f, n in total.most_common(TOP))
        text += "\n| own | frame |\n|---|---|\n"
        text += "".join(f"| {n / samples:.0%} | `{f}` |\n" for f, n in own.most_common(TOP))
    Path("docs/PROFILES.md").write_text(text, encoding="utf-8")
