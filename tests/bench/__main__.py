"""`make bench`: the table of issue 9, each row beside a baseline measured in the same run.

Sections (GRIDGOV_BENCH_ONLY=ingest,cpu,... runs a subset, in this order): ingest batches
beside the raw kafka-python producer; CPU per event end to end beside the components' sum;
`/v1/rates` on a county under ingest and the dashboard's lag; projections rebuilt per worker
beside raw consume and COPY; publish → visible under a steady load; singles closed-loop and
paced; consumers and the broker on their own; a soak. Peak RSS per process covers the whole
run, its growth the soak. Prints a table and appends it, with the machine, date and commit, to
BENCHMARKS.md (GRIDGOV_BENCH_RECORD=0: print only).

The stack is the embedded one, or an outside Kafka and PostgreSQL where GRIDGOV_KAFKA_BOOTSTRAP
and GRIDGOV_DATABASE_URL name them (our processes still run here); the table says which.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psutil
import psycopg

from events import topics
from events.codec import canonical, encode
from events.envelope import Event, Role
from projections import sla
from projections.matters import FiveHave
from projections.periods import between
from projections.worker import PROJECTIONS
from services.admission import admit
from services.auth import Principal
from services.rates import SQL, spanned
from tests.bench.baselines import components, raw_producer
from tests.bench.broker import broker_rows
from tests.bench.consumers import consumer_rows
from tests.bench.paced import WARM_UP, singles_at, steady_load, visible_under_load
from tests.bench.phones import batch_post, get, phone, posts
from tests.bench.processes import (
    CpuUsed,
    Memory,
    consumers_paused,
    scratch_home,
    stack_processes,
)
from tests.bench.profile import Sampled
from tests.bench.profile import write as write_profiles
from tests.bench.projection import projection_rows
from tests.bench.report import Row, commit, machine, ms, record
from tests.lifecycles import lifecycle, report
from tests.stack import RunningStack, a_place, an_incident, wait_until

EVENTS = int(os.environ.get("GRIDGOV_BENCH_EVENTS", "20000"))
INCIDENTS = int(os.environ.get("GRIDGOV_BENCH_INCIDENTS", "100000"))
PACED_SECONDS = float(os.environ.get("GRIDGOV_BENCH_PACED_SECONDS", "30"))
SOAK_SECONDS = float(os.environ.get("GRIDGOV_BENCH_SOAK_SECONDS", "1800"))
SOAK_RATE = float(os.environ.get("GRIDGOV_BENCH_SOAK_RATE", "200"))  # events/s
#: singles after the rows of the platform's own throughput and latency: its ~37,000 one-event
#: requests leave the embedded broker a log of one-record batches, and Tansu's cost per record
#: grows with the batches it holds (the broker section), which every later row then paid
SECTIONS = ("ingest", "cpu", "rates", "projection", "visible", "singles", "consumers", "broker",
            "soak")
ONLY = [s for s in os.environ.get("GRIDGOV_BENCH_ONLY", ",".join(SECTIONS)).split(",") if s]
CLOSED_SHARE = 0.2  # of the county's incidents, how many carry a full lifecycle
BATCH = 500


async def post_batches(url: str, token: str, events: list[dict[str, Any]],
                       clients: int) -> tuple[float, list[float]]:
    """`events` in requests of BATCH to `POST /v1/events/batch`, over `clients` phones:
    (events/s accepted, request latencies)."""
    batches = [events[i:i + BATCH] for i in range(0, len(events), BATCH)]

    def all_accepted(answer: bytes, size: int) -> None:
        assert orjson.loads(answer)["accepted"] == size, answer[:300]

    elapsed, latencies = await closed_loop(
        url, [(batch_post(url, token, b), len(b)) for b in batches], clients, 200, all_accepted)
    return len(events) / elapsed, latencies


async def post_singles(url: str, token: str, events: list[dict[str, Any]], clients: int
                       ) -> tuple[float, list[float]]:
    """`events` one at a time to `POST /v1/events`, over `clients` phones (201 each)."""
    elapsed, latencies = await closed_loop(url, [(r, 1) for r in posts(url, token, events)],
                                           clients, 201, lambda answer, size: None)
    return len(events) / elapsed, latencies


async def closed_loop(url: str, requests: list[tuple[bytes, int]], clients: int, expect: int,
                      check: Callable[[bytes, int], None]) -> tuple[float, list[float]]:
    """Each phone sends its next request once the last is answered, encoded before the clock
    started: (seconds from the first request to the last answer, request latencies)."""
    latencies: list[float] = []
    pending = requests[::-1]

    async def client() -> None:
        async with phone(url) as line:
            while pending:
                request, size = pending.pop()
                t = time.perf_counter()
                answer = await line.send(request, expect)
                latencies.append(time.perf_counter() - t)
                check(answer, size)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started, latencies


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
    stack.publish(events, chunk=5000)  # fewer, bigger batches: see tests/bench/rebuild.py
    # asked once: each ask reads the last batches of 5,000, CPU the projector would lose
    ends = stack.log_ends(*FiveHave.topics)
    with Sampled(f"projector-five_have, catching up on {INCIDENTS:,} incidents",
                 stack.info["pids"]["projector-five_have"]):
        wait_until(lambda: stack.holds(FiveHave.name, ends),
                   timeout=3600, what="the matters projection to catch up")
    return len(events), len(events) / (time.perf_counter() - started)


def timed_gets(url: str, token: str, path: str, params: dict[str, str], n: int) -> list[float]:
    """`n` reads one after another on one keep-alive connection, each answered 200: a phone's
    ~0.1 ms of CPU a request, where httpx's ~2 ms had shared the 2 cores with the service it
    timed (tests/bench/phones.py)."""
    request = get(url, token, path, params)
    return asyncio.run(closed_loop(url, [(request, 1)] * n, 1, 200, lambda answer, size: None))[1]


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


def rates_while_ingesting(stack: RunningStack) -> list[Row]:
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
    tail = timed_gets(stack.info["query_url"], supervisor, "/v1/rates",
                      {**year, "p90": "true"}, 50)
    raw = raw_scan(stack.info["database_url"], county, 20)
    explain_dashboard(stack.info["database_url"], county, events)
    acks, lags = dashboard_lag(stack, 100)
    steady.set()
    loader.join()
    return [
        (f"matters projection catching up on {INCIDENTS:,} incidents ({events:,} events), "
         "events/s", f"{projected:,.0f}", "—", "chain + rate facts + rollup per batch"),
        ("`GET /v1/rates` county, year, p50 / p99 (ingest at 200 ev/s)", ms(plain),
         f"raw scan of the facts {ms(raw)}", "the daily rollup vs counting facts"),
        ("  with `children=true&by=month`, p50 / p99", ms(drill), "—", ""),
        ("  with `p90=true` (a sort of the year's facts), p50 / p99", ms(tail), "—", ""),
        ("publish → dashboard (201, then SSE `applied`), p50 / p99", ms(lags),
         f"publish → 201 {ms(acks)}", "projection + NOTIFY + SSE"),
    ]


def explain_dashboard(database_url: str, county: str, events: int) -> None:
    """EXPLAIN ANALYZE of every statement the figures are read with, for the county's year,
    into docs/EXPLAIN.md (docs/ARCHITECTURE.md, "How cost grows", reads it)."""
    year = (date(2025, 1, 1), date(2025, 12, 31))
    below = (county, county + "/%")
    with psycopg.connect(database_url) as conn:
        params: dict[str, Any] = {
            "counts": spanned(between(*year), place=county),
            "p90": [["owned", "resolved", "verified"], *below, *year],
            "patrol_coverage": [year[1], *below], "closed_at_end": [county, year[1], year[1]],
            "series": spanned(between(*year), by="month", place=county),
            "series_by_day": ["week", county, *year],
            "children": spanned(between(*year), depth=2, under=county + "/%"),
            "funnel": [county],
        }
        plans = {name: "\n".join(r for (r,) in conn.execute(
            f"explain (analyze, buffers) {SQL[name]}", params[name]))  # noqa: S608 - ours
            for name in SQL}
    Path("docs/EXPLAIN.md").write_text(
        f"# The dashboard's statements at a county of {INCIDENTS:,} incidents ({events:,}"
        f" events)\n\nWritten by `make bench` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit"
        f" {commit()}; {machine()}): `EXPLAIN (ANALYZE, BUFFERS)` of each statement in"
        " `services/rates.py` `SQL`, for the county's year 2025.\n"
        + "".join(f"\n## {name}\n```\n{SQL[name]}\n```\n```\n{plan}\n```\n"
                  for name, plan in plans.items()), encoding="utf-8")


def a_county_of_events(n: int) -> tuple[str, list[dict[str, Any]], list[tuple[bytes, bytes]]]:
    """n new incidents in a county of their own, as phones send them and as the log keeps
    them: (county, bodies, records of key and canonical event)."""
    county = a_place().split("/")[0]
    events = [an_incident(f"{county}/101/001/01") for _ in range(n)]
    principal = Principal(sub="w-bench", role=Role.worker, scope=(county,))
    now = datetime.now(UTC)
    records = [(e["aggregate_id"].encode(), canonical(admit(e, principal, now=now)))
               for e in events]
    return county, events, records


def admission_us(county: str, events: list[dict[str, Any]]) -> float:
    """Microseconds per event of what ingest must do before its producer may send: parse the
    JSON, admit (validate, role, scope, clock) and encode once."""
    principal = Principal(sub="w-bench", role=Role.worker, scope=(county,))
    bodies, now = [orjson.dumps(e) for e in events], datetime.now(UTC)
    started = time.perf_counter()
    for body in bodies:
        encode(admit(orjson.loads(body), principal, now=now))
    return (time.perf_counter() - started) / len(bodies) * 1e6


def ingest_rows(stack: RunningStack) -> list[Row]:
    county, events, records = a_county_of_events(EVENTS)
    token = stack.token(Role.worker, county, sub="w-bench")
    _, raw = raw_producer(stack.info["kafka_bootstrap"], records)
    admission = admission_us(county, events)
    ceiling = 1e6 / (admission + 1e6 / raw)  # the producer's work and ours, on one core
    started = time.perf_counter()
    with Sampled("ingest, `POST /v1/events/batch` (500/request, 4 clients)",
                 stack.info["pids"]["ingest"]):
        rate, latencies = asyncio.run(post_batches(stack.info["ingest_url"], token, events, 4))
    wait_until(lambda: stack.archived_under(county) >= EVENTS, timeout=600,
               what="the archive to catch up")
    archive_rate = EVENTS / (time.perf_counter() - started)
    alone_county, alone_events, _ = a_county_of_events(EVENTS // 2)
    with consumers_paused(stack_processes(stack)):
        alone, _ = asyncio.run(post_batches(
            stack.info["ingest_url"], stack.token(Role.worker, alone_county, sub="w-bench"),
            alone_events, 4))
    wait_until(lambda: stack.archived_under(alone_county) >= len(alone_events), timeout=600,
               what="the archive to catch up")
    return [
        ("ingest `POST /v1/events/batch` (500/request, 4 clients), events/s", f"{rate:,.0f}",
         f"raw kafka-python producer {raw:,.0f}", f"{rate / raw:.2f} × baseline (goal ≥ 0.7);"
         f" ceiling of parse + admit + encode ({admission:.0f} µs) + send: {ceiling:,.0f}"
         f" ev/s = {ceiling / raw:.2f} ×"),
        ("  batch request latency p50 / p99", ms(latencies), "—", ""),
        (f"  the same, {len(alone_events):,} events with the projectors and deciders paused",
         f"{alone:,.0f}", f"raw kafka-python producer {raw:,.0f}",
         f"{alone / raw:.2f} × baseline: ingest, the broker and PostgreSQL alone on the 2"
         " cores"),
        ("publish → archived (ingest and archive together), events/s", f"{archive_rate:,.0f}",
         "—", "the archive keeps up with ingest"),
    ]


def singles_rows(stack: RunningStack) -> list[Row]:
    grid = a_place()
    singles = [an_incident(grid) for _ in range(min(EVENTS // 4, 5000))]
    with Sampled("ingest, `POST /v1/events` one at a time, 32 clients",
                 stack.info["pids"]["ingest"]):
        rate, latencies = asyncio.run(post_singles(
            stack.info["ingest_url"], stack.token(Role.worker, grid), singles, 32))
    paced = asyncio.run(singles_at(stack, 1000, PACED_SECONDS))
    wait_until(lambda: stack.archived_under(grid.split("/")[0]) >= len(singles), timeout=600,
               what="the archive to catch up")
    alone_grid = a_place()
    with consumers_paused(stack_processes(stack)):
        alone, alone_latencies = asyncio.run(post_singles(
            stack.info["ingest_url"], stack.token(Role.worker, alone_grid),
            [an_incident(alone_grid) for _ in range(2000)], 32))
    return [
        ("ingest `POST /v1/events` one at a time, 32 clients, req/s", f"{rate:,.0f}", "—",
         "goal ≥ 2,000 req/s (issue 9)"),
        ("  single request latency p50 / p99", ms(latencies, 1), "—", ""),
        ("  the same, 2,000 requests with the projectors and deciders paused, req/s; p50 / p99",
         f"{alone:,.0f}; {ms(alone_latencies, 1)}", "—",
         "ingest, the broker and PostgreSQL alone on the 2 cores"),
        (f"  at a steady 1,000 req/s (open loop, 32 connections, {PACED_SECONDS:.0f} s),"
         " p50 / p99", ms(paced.latencies, 1), "—",
         f"due at {paced.started:,.0f}/s, answered at {paced.answered:,.0f}/s; latency from"
         " when each was due; goal p99 ≤ 25 ms"),
    ]


def cpu_rows(stack: RunningStack) -> list[Row]:
    """CPU time of every process of the stack (services, broker, PostgreSQL and its backends)
    while EVENTS go from `POST /v1/events/batch` to applied by the archive and the chain, per
    event; the benchmark's own client is not counted, the stack's idle ticking is."""
    county, events, records = a_county_of_events(EVENTS)
    processes = stack_processes(stack)
    servers = {name: processes[name] for name in ("broker", "postgres") if name in processes}
    parts = components(stack.info["kafka_bootstrap"], stack.info["database_url"], records,
                       servers)
    with CpuUsed(processes) as quiet:
        time.sleep(3.0)  # an interval measured, not a condition awaited
    idle = sum(quiet.seconds.values()) / quiet.elapsed
    token = stack.token(Role.worker, county, sub="w-bench")
    with psycopg.connect(stack.info["database_url"], autocommit=True) as conn:
        def applied() -> bool:
            counts = conn.execute(
                "select (select count(*) from archive where place like %(p)s),"
                " (select count(*) from five_have where grid like %(p)s)",
                {"p": county + "/%"}).fetchone()
            return counts is not None and min(counts) >= len(events)

        with CpuUsed(processes) as cpu:
            asyncio.run(post_batches(stack.info["ingest_url"], token, events, 4))
            wait_until(applied, timeout=600, what="the archive and the chain to apply the events")
    used = sum(cpu.seconds.values())
    per_event = used / len(events) * 1e6
    return [(f"CPU µs per event end to end (all processes), {len(events):,} events published"
             " → archived and chained", f"{per_event:,.0f} µs", f"components {parts}",
             f"{per_event / parts.total:.2f} × baseline (goal ≤ 2); the design's floor"
             f" ({parts.floor_terms(list(servers))}) {parts.design_floor:.0f} µs ="
             f" {parts.design_floor / parts.total:.2f} ×; {used / cpu.elapsed:.2f}"
             f" cores busy over {cpu.elapsed:.1f} s, idle stack {idle:.2f} cores; µs per event"
             f" by process: {cpu.busiest(len(events) / 1e6)}")]


def visible_rows(stack: RunningStack) -> list[Row]:
    """The row's latency moves with how long a log it runs on (the broker's row): the incidents
    topic's length is named beside it."""
    held = sum(stack.log_ends(topics.INCIDENTS.name).values())
    with Sampled("projector-five_have under a steady 1,000 events/s",
                 stack.info["pids"]["projector-five_have"]), \
            CpuUsed(stack_processes(stack)) as cpu:
        acks, visible, load = asyncio.run(visible_under_load(stack, 1000, PACED_SECONDS))
    return [("publish → visible in `GET /v1/incidents` under a steady 1,000 events/s,"
             " p50 / p99", ms(visible), f"publish → 201 {ms(acks)}",
             f"{len(visible)} probes; load in batches of 100 due at {load.started * 100:,.0f}"
             f" ev/s, answered at {load.answered * 100:,.0f} ev/s over {PACED_SECONDS:.0f} s"
             f" after {WARM_UP:.0f} s of it, on a topic of {held:,} records; goal p99 ≤ 500 ms;"
             " cores by process:"
             f" {cpu.busiest(cpu.elapsed, 2)}")]


def soak(stack: RunningStack) -> tuple[float, float]:
    """A steady load for SOAK_SECONDS: (when it started, when it ended), monotonic."""
    started = time.monotonic()
    asyncio.run(steady_load(stack, SOAK_RATE, SOAK_SECONDS, 50))
    return started, time.monotonic()


def memory_rows(memory: Memory, soaked: tuple[float, float] | None) -> list[Row]:
    """Peak RSS of each process over the run; with a soak, the mean RSS of its last minute
    against its first (a quarter of the soak each, when it is shorter than four minutes)."""
    rows: list[Row] = []
    for name in memory.processes:
        peak, note = f"peak {memory.peak(name) / 2**20:.0f} MB", "goal ≤ 300 MB"
        if soaked:
            since, until = soaked
            window = min(60.0, (until - since) / 4)
            first = memory.mean(name, since, since + window)
            last = memory.mean(name, until - window, until)
            peak += f"; soak {(last / first - 1) * 100:+.1f} %"
            note += f"; soak of {until - since:.0f} s at {SOAK_RATE:.0f} ev/s:" \
                    f" {first / 2**20:.0f} → {last / 2**20:.0f} MB (goal ≤ 5 % growth)"
            if name == "broker":
                note += "; the embedded broker keeps the log in memory"
        rows.append((f"RSS, {name}", peak, "—", note))
    return rows


def stack_named(stack: RunningStack, processes: dict[str, psutil.Process]) -> str:
    """Which Kafka and PostgreSQL the rows ran on: the embedded pair (the stack's own
    processes), or an outside one named by GRIDGOV_KAFKA_BOOTSTRAP and GRIDGOV_DATABASE_URL
    (said without credentials)."""
    version = stack.sql("show server_version")[0][0]
    database = urlsplit(stack.info["database_url"])
    embedded = {"Kafka": "broker" in processes, "PostgreSQL": "postgres" in processes}
    kafka = "the embedded Tansu broker (its log in memory)" if embedded["Kafka"] \
        else f"Kafka at {stack.info['kafka_bootstrap']}"
    where = f"{database.hostname}:{database.port or 5432}" if database.hostname \
        else "a local socket"
    postgres = f"the embedded PostgreSQL {version}" if embedded["PostgreSQL"] \
        else f"PostgreSQL {version} at {where}, database {database.path.lstrip('/')}"
    outside = [name for name, here in embedded.items() if not here]
    return (f"Stack: {kafka} and {postgres}"
            + (f"; the CPU of the outside {' and '.join(outside)} is in no row that sums"
               " processes" if outside else "") + ".\n\n")


def main() -> None:
    if unknown := set(ONLY) - set(SECTIONS):
        raise SystemExit(f"GRIDGOV_BENCH_ONLY: no section {sorted(unknown)}; one of {SECTIONS}")
    with scratch_home("bench") as home:
        stack = RunningStack(home, outside=True).start()
        rows: list[Row] = []
        try:
            processes = stack_processes(stack)
            stack_used = stack_named(stack, processes)
            memory = Memory({n: p for n, p in processes.items() if n != "postgres"})
            memory.start()
            sections = {"ingest": ingest_rows, "singles": singles_rows, "cpu": cpu_rows,
                        "rates": rates_while_ingesting, "projection": projection_rows,
                        "visible": visible_rows, "consumers": consumer_rows,
                        "broker": lambda _: broker_rows()}
            for name in (s for s in SECTIONS if s in ONLY and s in sections):
                print(f"  {name}", flush=True)  # noqa: T201 - progress of a long run
                # the bench's own heap (generated incidents, bodies) out of its collector's
                # sight: a full collection of it had stopped the probes' clocks for 90-134 ms,
                # a pause of the instrument, not of the platform
                gc.freeze()
                # on a settled stack: a backlog the section before left the projectors would
                # be counted in this one's CPU, its idle stack and its latencies
                stack.until_applied(PROJECTIONS.values())
                rows += sections[name](stack)
            soaked = soak(stack) if "soak" in ONLY else None
            memory.running = False
            rows += memory_rows(memory, soaked)
        finally:
            stack.stop()
    record(f"{EVENTS:,} events; sections {', '.join(ONLY)}", rows, preface=stack_used)
    write_profiles(commit(), machine())


if __name__ == "__main__":
    main()
