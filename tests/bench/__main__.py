"""`make bench`: ingest through the API beside the raw kafka-python producer, same records.

Prints a table and appends it, with the machine, date and commit, to BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from events.codec import canonical
from events.envelope import Role
from events.log import durable_producer_config
from services.admission import admit
from services.auth import Principal
from tests.stack import RunningStack, a_place, an_incident, wait_until

EVENTS = int(os.environ.get("GRIDGOV_BENCH_EVENTS", "20000"))
BATCH = 500


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


def raw_producer(bootstrap: str, records: list[tuple[bytes, bytes]]) -> float:
    """Baseline: kafka-python alone, the same records and settings, acks=all."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    topic = f"bench.raw.{int(time.time())}"
    admin.create_topics([NewTopic(topic, 12, 1)])
    admin.close()
    producer = KafkaProducer(**durable_producer_config(bootstrap))
    producer.send(topic, b"warm-up").get(timeout=10)
    started = time.perf_counter()
    futures = [producer.send(topic, key=k, value=v) for k, v in records]
    producer.flush()
    for f in futures:
        f.get(timeout=30)
    elapsed = time.perf_counter() - started
    producer.close()
    return len(records) / elapsed


async def post_batches(url: str, token: str, batches: list[list[dict[str, Any]]],
                       clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60,
                                     headers={"authorization": f"Bearer {token}"}) as http:
            while not queue.empty():
                batch = queue.get_nowait()
                t = time.perf_counter()
                answer = await http.post("/v1/events/batch", json={"events": batch})
                latencies.append(time.perf_counter() - t)
                assert answer.json()["accepted"] == len(batch), answer.text[:300]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return sum(map(len, batches)) / (time.perf_counter() - started), latencies


async def post_singles(url: str, token: str, events: list[dict[str, Any]], clients: int
                       ) -> tuple[float, list[float]]:
    latencies: list[float] = []
    pending = list(events)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60,
                                     headers={"authorization": f"Bearer {token}"}) as http:
            while pending:
                event = pending.pop()
                t = time.perf_counter()
                answer = await http.post("/v1/events", json=event)
                latencies.append(time.perf_counter() - t)
                assert answer.status_code == 201, answer.text[:300]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(events) / (time.perf_counter() - started), latencies


class PeakRss(threading.Thread):
    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.processes = {n: psutil.Process(p) for n, p in pids.items() if p}
        self.peak = dict.fromkeys(self.processes, 0)
        self.running = True

    def run(self) -> None:
        while self.running:
            for name, proc in self.processes.items():
                try:
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.2)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    memory = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} " \
           f"{platform.release()}, Python {platform.python_version()}"


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="gridgov-bench-")) / "home"
    stack = RunningStack(home).start()
    rows: list[tuple[str, str, str, str]] = []
    try:
        county = a_place().split("/")[0]
        grid = f"{county}/101/001/01"
        token = stack.token(Role.worker, county, sub="w-bench")
        events = [an_incident(grid) for _ in range(EVENTS)]
        principal = Principal(sub="w-bench", role=Role.worker, scope=(county,))
        now = datetime.now(UTC)
        records = [(e["aggregate_id"].encode(), canonical(admit(e, principal, now=now)))
                   for e in events]

        raw = raw_producer(stack.info["kafka_bootstrap"], records)
        rss = PeakRss({n: stack.info["pids"][n] for n in ("ingest", "projector-archive")})
        rss.start()
        batches = [events[i:i + BATCH] for i in range(0, len(events), BATCH)]
        started = time.perf_counter()
        rate, latencies = asyncio.run(post_batches(stack.info["ingest_url"], token, batches, 4))
        wait_until(lambda: stack.archived_under(county) >= EVENTS, timeout=600,
                   what="the archive to catch up")
        archive_rate = EVENTS / (time.perf_counter() - started)
        rows.append(("ingest `POST /v1/events/batch` (500/request, 4 clients), events/s",
                     f"{rate:,.0f}", f"raw kafka-python producer {raw:,.0f}",
                     f"{rate / raw:.2f} × baseline (goal ≥ 0.7)"))
        rows.append(("  batch request latency p50 / p99",
                     f"{percentile(latencies, 50) * 1000:.0f} / "
                     f"{percentile(latencies, 99) * 1000:.0f} ms", "—", ""))
        rows.append(("publish → archived (ingest and archive together), events/s",
                     f"{archive_rate:,.0f}", "—", "the archive keeps up with ingest"))

        singles = [an_incident(grid) for _ in range(min(EVENTS // 4, 5000))]
        single_rate, single_lat = asyncio.run(
            post_singles(stack.info["ingest_url"], token, singles, 32))
        rows.append(("ingest `POST /v1/events` one at a time, 32 clients, req/s",
                     f"{single_rate:,.0f}", "—", "goal ≥ 2,000 req/s (issue 9)"))
        rows.append(("  single request latency p50 / p99",
                     f"{percentile(single_lat, 50) * 1000:.1f} / "
                     f"{percentile(single_lat, 99) * 1000:.1f} ms", "—", ""))
        rss.running = False
        for name, peak in rss.peak.items():
            rows.append((f"peak RSS, {name}", f"{peak / 2**20:.0f} MB", "—", "goal ≤ 300 MB"))
    finally:
        stack.stop()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    header = (f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · commit {commit} · "
              f"{EVENTS:,} events\n\nMachine: {machine()}\n\n"
              "| row | measured | baseline in the same run | note |\n|---|---|---|---|\n")
    table = header + "".join(f"| {a} | {b} | {c} | {d} |\n" for a, b, c, d in rows)
    print(table)  # noqa: T201 - the benchmark's output is this table
    with open("BENCHMARKS.md", "a", encoding="utf-8") as out:
        out.write(table)


if __name__ == "__main__":
    main()
