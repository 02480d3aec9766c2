"""`make bench`: ingest through the API beside the raw kafka-python producer, same records.

Prints a table and appends it, with the machine, date and commit, to BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import psycopg
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from events.codec import canonical
from events.envelope import Event, Role
from events.log import durable_producer_config
from projections import sla
from services.admission import admit
from services.auth import Principal
from tests.lifecycles import lifecycle, report
from tests.stack import RunningStack, a_place, an_incident, wait_until

EVENTS = int(os.environ.get("GRIDGOV_BENCH_EVENTS", "20000"))
INCIDENTS = int(os.environ.get("GRIDGOV_BENCH_INCIDENTS", "100000"))
CLOSED_SHARE = 0.2  # of the county's incidents, how many carry a full lifecycle
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


def county_of_incidents(stack: RunningStack, county: str) -> tuple[int, float]:
    """INCIDENTS matters in one county, a share with full lifecycles, published straight to
    the log; returns the events and the matters projection's rate while it catches up."""
    rng = random.Random(7)
    rules = sla.load()
    grids = [f"{county}/{t:03d}/{c:03d}/{g:02d}" for t in range(1, 6) for c in range(1, 5)
             for g in range(1, 6)]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    events: list[Event[Any]] = []
    for n in range(INCIDENTS):
        at = start + timedelta(minutes=rng.randrange(365 * 24 * 60))
        grid = rng.choice(grids)
        events += lifecycle(rules, grid, rng, at) if rng.random() < CLOSED_SHARE \
            else [report(grid, rng, at)]
        if n % 20000 == 19999:
            print(f"  generated {n + 1:,} incidents", flush=True)  # noqa: T201
    started = time.perf_counter()
    stack.publish(events)
    wait_until(lambda: stack.caught_up("five_have", "gridgov.incidents", "gridgov.patrols"),
               timeout=3600, what="the matters projection to catch up")
    return len(events), len(events) / (time.perf_counter() - started)


def timed_gets(url: str, token: str, path: str, params: dict[str, str], n: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"},
                      timeout=60) as http:
        for _ in range(n):
            t = time.perf_counter()
            answer = http.get(path, params=params)
            latencies.append(time.perf_counter() - t)
            assert answer.status_code == 200, answer.text[:300]
    return latencies


def raw_scan(database_url: str, county: str, n: int) -> list[float]:
    """Baseline: the same counts by scanning the facts, without the daily rollup."""
    latencies = []
    with psycopg.connect(database_url) as conn:
        for _ in range(n):
            t = time.perf_counter()
            conn.execute("select measure, count(*) from rate_facts where grid like %s"
                         " and day between '2025-01-01' and '2025-12-31' group by measure",
                         [county + "/%"]).fetchall()
            latencies.append(time.perf_counter() - t)
    return latencies


def dashboard_lag(stack: RunningStack, samples: int) -> tuple[list[float], list[float]]:
    """Publish one incident at a time into a grid of its own; time to its 201, and to the
    first SSE `applied` that names the grid (what makes a dashboard on it refresh)."""
    grid = a_place()
    worker, supervisor = stack.token(Role.worker, grid), stack.token(Role.supervisor, grid)
    acks: list[float] = []
    lags: list[float] = []
    heard: list[float] = []  # when an `applied` naming the grid arrived
    ready = threading.Event()
    drops = []

    def listen() -> None:  # like a browser's EventSource: reconnect when the stream drops
        while len(lags) < samples:
            try:
                with httpx.stream("GET", stack.info["query_url"] + "/v1/live",
                                  params={"access_token": supervisor},
                                  timeout=httpx.Timeout(60, read=None)) as stream:
                    for line in stream.iter_lines():
                        ready.set()
                        if line.startswith("data:") and '"grids"' in line:
                            if grid in orjson.loads(line[5:])["grids"]:
                                heard.append(time.perf_counter())
                        if len(lags) >= samples:
                            return
            except httpx.HTTPError as exc:
                drops.append(repr(exc))

    threading.Thread(target=listen, daemon=True).start()
    ready.wait(30)
    with stack.ingest(worker) as phone:
        for _ in range(samples):
            t = time.perf_counter()
            assert phone.post("/v1/events", json=an_incident(grid)).status_code == 201
            acks.append(time.perf_counter() - t)
            after = wait_until(lambda t=t: [h for h in heard if h > t], timeout=30,
                               what="the dashboard to hear")
            lags.append(after[0] - t)
    if drops:
        print(f"  the live stream dropped {len(drops)} times: {drops[:2]}")  # noqa: T201
    return acks, lags


def rates_while_ingesting(stack: RunningStack) -> list[tuple[str, str, str, str]]:
    county = a_place().split("/")[0]
    events, projected = county_of_incidents(stack, county)
    supervisor = stack.token(Role.supervisor, county)
    steady = threading.Event()

    def ingest_steadily() -> None:  # 200 events/s into another county while we query
        elsewhere = a_place()
        token = stack.token(Role.worker, elsewhere)
        with stack.ingest(token) as phone:
            while not steady.is_set():
                t = time.perf_counter()
                phone.post("/v1/events/batch",
                           json={"events": [an_incident(elsewhere) for _ in range(50)]})
                time.sleep(max(0.0, 0.25 - (time.perf_counter() - t)))

    loader = threading.Thread(target=ingest_steadily, daemon=True)
    loader.start()
    year = {"place": county, "period": "2025"}
    plain = timed_gets(stack.info["query_url"], supervisor, "/v1/rates", year, 200)
    drill = timed_gets(stack.info["query_url"], supervisor, "/v1/rates",
                       {**year, "children": "true", "by": "month"}, 100)
    raw = raw_scan(stack.info["database_url"], county, 20)
    acks, lags = dashboard_lag(stack, 100)
    steady.set()
    loader.join()

    def ms(values: list[float]) -> str:
        return f"{percentile(values, 50) * 1000:.0f} / {percentile(values, 99) * 1000:.0f} ms"

    return [
        (f"matters projection catching up on {INCIDENTS:,} incidents ({events:,} events), "
         "events/s", f"{projected:,.0f}", "—", "chain + rate facts + rollup per batch"),
        ("`GET /v1/rates` county, year, p50 / p99 (ingest at 200 ev/s)", ms(plain),
         f"raw scan of the facts {ms(raw)}", "the daily rollup vs counting facts"),
        ("  with `children=true&by=month`, p50 / p99", ms(drill), "—", ""),
        ("publish → dashboard (201, then SSE `applied`), p50 / p99", ms(lags),
         f"publish → 201 {ms(acks)}", "projection + NOTIFY + SSE"),
    ]


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
        rows += rates_while_ingesting(stack)
        rss.running = False
        for name, peak in rss.peak.items():
            rows.append((f"peak RSS, {name}", f"{peak / 2**20:.0f} MB", "—", "goal ≤ 300 MB"))
    finally:
        stack.stop()

    record(f"{EVENTS:,} events", rows)


Row = tuple[str, str, str, str]  # what, measured, the baseline in the same run, a note


def record(title: str, rows: list[Row], preface: str = "") -> None:
    """Print the table and append it to BENCHMARKS.md with the date, commit and machine."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    table = (f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · commit {commit} · {title}\n\n"
             f"Machine: {machine()}\n\n{preface}"
             "| row | measured | baseline in the same run | note |\n|---|---|---|---|\n"
             + "".join(f"| {a} | {b} | {c} | {d} |\n" for a, b, c, d in rows))
    print(table)  # noqa: T201 - the benchmark's output is this table
    with open("BENCHMARKS.md", "a", encoding="utf-8") as out:
        out.write(table)


if __name__ == "__main__":
    main()
