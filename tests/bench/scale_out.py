"""`make bench-scale`: the chain-and-rates projection (five_have) with 1, 2 and 3 workers.

On the embedded broker and PostgreSQL (started here, without `dev up`, so no other projector
runs), a backlog of incident lifecycles goes onto the log, then N `gridgov project five_have`
processes start in one consumer group and drain it. The rate counts from 10 % to 90 % of the
backlog applied (the group's join and the last stragglers left out); the drain time includes
them. Then one worker drains a backlog that lies in a single partition: the most one partition
can take, whatever the workers, which is what sizing divides the peak rate by. Appends to
BENCHMARKS.md. Every process shares this machine's cores with the broker and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from kafka.partitioner.default import murmur2

from events.envelope import Event
from events.log import EventLog, consumer, create_topics, end_offsets, partitions_of
from events.topics import INCIDENTS
from projections import sla
from projections.matters import FiveHave
from projections.store import migrate
from services.dev import Child, start_postgres, stop_postgres, tansu_binary, wait_for_port
from tests.bench.processes import scratch_home
from tests.bench.report import record
from tests.lifecycles import lifecycle
from tests.stack import free_port

BACKLOG = int(os.environ.get("GRIDGOV_BENCH_SCALE_EVENTS", "30000"))
WORKERS = (1, 2, 3)
PARTITIONS = 12


def lifecycles(rng: random.Random, county: str, events: int,
               keep: Callable[[str], bool] = lambda _: True) -> list[Event[Any]]:
    rules = sla.load()
    grids = [f"{county}/{t:03d}/001/{g:02d}" for t in range(1, 4) for g in range(1, 6)]
    start = datetime.now(UTC) - timedelta(days=30)
    stream: list[Event[Any]] = []
    while len(stream) < events:
        matter = lifecycle(rules, rng.choice(grids), rng, start + timedelta(minutes=len(stream)))
        if keep(matter[0].aggregate_id):
            stream += matter
    return stream


def load() -> str:
    """The machine's load when a row was measured: other work on the same cores skews it."""
    return f"load average {os.getloadavg()[0]:.1f}"


def partition_of(key: str) -> int:
    """Where kafka-python's default partitioner puts a key (murmur2, as the Java client)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


class Infrastructure:
    """The embedded broker and PostgreSQL, as `gridgov dev up` starts them, and nothing else."""

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "logs").mkdir(parents=True, exist_ok=True)
        self.database_url, self.postgres = start_postgres(home)
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        self.broker = Child("broker", [str(tansu_binary()), "broker", "--listener-url", url,
                                       "--advertised-listener-url", url,
                                       "--storage-engine", "memory://tansu/"],
                            dict(os.environ), home / "logs" / "broker.log")
        self.broker.start()
        wait_for_port("127.0.0.1", port, 10)
        self.bootstrap = f"127.0.0.1:{port}"
        migrate(self.database_url)
        create_topics(self.bootstrap, PARTITIONS)

    def stop(self) -> None:
        self.broker.stop()
        stop_postgres(self.postgres)

    def publish(self, events: list[Event[Any]]) -> None:
        async def send() -> None:
            log = EventLog(self.bootstrap, client_id="bench")
            for at in range(0, len(events), 500):
                await log.append_many(events[at:at + 500])
            log.close()

        asyncio.run(send())

    def log_end(self) -> int:
        kafka = consumer(self.bootstrap)
        try:
            return sum(end_offsets(kafka, partitions_of(kafka, FiveHave.topics)).values())
        finally:
            kafka.close()

    def applied(self) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("select coalesce(sum(next_offset), 0) from projection_offsets"
                               " where projection = %s", [FiveHave.name]).fetchone()
        return int(row[0]) if row else 0

    def worker(self, n: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRIDGOV_HOME": str(self.home),
               "GRIDGOV_KAFKA_BOOTSTRAP": self.bootstrap, "GRIDGOV_DATABASE_URL": self.database_url,
               "GRIDGOV_PROJECTOR_METRICS_PORT": str(free_port(consecutive=2))}
        with open(self.home / "logs" / f"worker-{n}.log", "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "services.cli", "project", "five_have"],
                                    env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)


def drain(infra: Infrastructure, events: list[Event[Any]], workers: int
          ) -> tuple[float, float]:
    """Publish the backlog, start the workers, wait until it is applied: (events/s between 10 %
    and 90 % of the backlog, seconds from the workers' start to the last event applied)."""
    before = infra.applied()
    infra.publish(events)
    end = infra.log_end()
    backlog = end - before
    processes = [infra.worker(n) for n in range(workers)]
    try:
        started = time.perf_counter()
        marks: dict[float, float] = {}
        while (done := infra.applied() - before) < backlog:
            for share in (0.1, 0.9):
                if done >= share * backlog:
                    marks.setdefault(share, time.perf_counter())
            assert all(p.poll() is None for p in processes), "a worker died"
            assert time.perf_counter() - started < 1800, "the backlog was not drained"
            time.sleep(0.02)
        finished = time.perf_counter()
        marks.setdefault(0.1, finished)
        marks.setdefault(0.9, finished)
        steady = 0.8 * backlog / max(marks[0.9] - marks[0.1], 1e-9)
        return steady, finished - started
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main() -> None:
    rng = random.Random(20261128)
    with scratch_home("bench-scale") as home:
        infra = Infrastructure(home)
        rows: list[tuple[str, str, str, str]] = []
        try:
            # a first drain warms the broker, PostgreSQL's caches and the tables' first pages
            drain(infra, lifecycles(rng, "990001", BACKLOG // 5), 1)
            rates = {}
            for workers in WORKERS:
                county = f"{990010 + workers}"
                rate, seconds = drain(infra, lifecycles(rng, county, BACKLOG), workers)
                rates[workers] = rate
                print(f"  {workers} worker(s): {rate:,.0f} events/s, drained in {seconds:.1f} s",
                      flush=True)  # noqa: T201
                rows.append((f"five_have projection, {workers} worker(s), {PARTITIONS} partitions"
                             " per topic, events/s", f"{rate:,.0f}",
                             f"1 worker {rates[1]:,.0f}" if workers > 1 else "—",
                             f"{rate / rates[1]:.2f} × one worker; {rate / workers:,.0f}"
                             f" per worker; drained {BACKLOG:,} in {seconds:.1f} s; {load()}"))
            hot = lifecycles(rng, "990020", BACKLOG // 2,
                             keep=lambda key: partition_of(key) == 0)
            assert {partition_of(e.aggregate_id) for e in hot} == {0}
            rate, seconds = drain(infra, hot, 1)
            print(f"  one partition: {rate:,.0f} events/s", flush=True)  # noqa: T201
            rows.append((f"one partition ({INCIDENTS.name}/0) alone, 1 worker, events/s",
                         f"{rate:,.0f}", f"12 partitions, 1 worker {rates[1]:,.0f}",
                         f"the ceiling of one partition: a partition is one worker's; {load()}"))
        finally:
            infra.stop()

    record(f"scale-out, {BACKLOG:,} events per run (`make bench-scale`)", rows, preface=(
        "Workers are `gridgov project five_have` processes in one consumer group, on the"
        " embedded broker and PostgreSQL of the same machine; rates count from 10 % to"
        " 90 % of the backlog applied.\n\n"))

if __name__ == "__main__":
    main()
