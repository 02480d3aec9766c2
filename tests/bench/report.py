"""The benchmark table: rows beside their baselines, printed and appended to BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import psutil

Row = tuple[str, str, str, str]  # what, measured, the baseline in the same run, a note


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


def ms(values: list[float], digits: int = 0) -> str:
    """p50 / p99 of latencies in seconds, in milliseconds."""
    return f"{percentile(values, 50) * 1000:.{digits}f} / " \
           f"{percentile(values, 99) * 1000:.{digits}f} ms"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    memory = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} " \
           f"{platform.release()}, Python {platform.python_version()}"


def commit() -> str:
    """The commit measured."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def record(title: str, rows: list[Row], preface: str = "") -> None:
    """Print the table and append it to BENCHMARKS.md with the date, commit and machine;
    GRIDGOV_BENCH_RECORD=0 only prints it (trial runs)."""
    table = (f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · commit {commit()} · {title}\n\n"
             f"Machine: {machine()}\n\n{preface}"
             "| row | measured | baseline in the same run | note |\n|---|---|---|---|\n"
             + "".join(f"| {a} | {b} | {c} | {d} |\n" for a, b, c, d in rows))
    print(table)  # noqa: T201 - the benchmark's output is this table
    if os.environ.get("GRIDGOV_BENCH_RECORD", "1") != "0":
        with open("BENCHMARKS.md", "a", encoding="utf-8") as out:
            out.write(table)
