"""Projection throughput per worker: each projection rebuilt from the broker by one worker (the
same runner and sink as the live projector, into a schema of its own), beside kafka-python
alone reading the same topics and COPY alone writing the same rows."""

from __future__ import annotations

import asyncio
import os
import time

from events.log import Record
from projections.archive import Archive
from projections.matters import FiveHave
from projections.replay import BATCH, replay
from projections.runner import Projection, decode
from tests.bench.baselines import raw_consume, raw_copy
from tests.bench.profile import Sampled
from tests.bench.report import Row
from tests.stack import RunningStack


def rebuilt(stack: RunningStack, projection: Projection, workers: int = 1) -> tuple[int, float]:
    """(records read, records/s) of `workers` rebuilding `projection` from offset 0."""
    read = 0

    def progress(n: int) -> None:
        nonlocal read
        read += n

    started = time.perf_counter()
    asyncio.run(replay(projection, bootstrap=stack.info["kafka_bootstrap"],
                       database_url=stack.info["database_url"],
                       schema=f"bench_{projection.name}_{workers}", progress=progress,
                       workers=workers))
    return read, read / (time.perf_counter() - started)


def decoded(bodies: list[bytes]) -> float:
    """Microseconds per record of the runner's own decode (the catalog's validation, upcast):
    what any projection pays that must tell a poison record from an event. In a rebuild's
    batches, each let go before the next: all the run's records decoded into one list had the
    collector walk it, 43–48 µs a record against 28–30 (scratch, 2026-11-28, 60,000)."""
    records = [Record("bench", 0, n, None, body) for n, body in enumerate(bodies)]
    started = time.perf_counter()
    for first in range(0, len(records), BATCH):
        decode(records[first:first + BATCH])
    return (time.perf_counter() - started) / max(len(records), 1) * 1e6


def projection_rows(stack: RunningStack) -> list[Row]:
    """Archive and chain-and-rates over everything the run has published so far; the slower
    of raw consume and raw COPY of the same records is each one's baseline. Beside it, the
    ceiling of any projection on one core that reads with kafka-python, validates each record
    and COPYs a row of it: 1 / (consume + decode + COPY). The live projectors are idle: the
    bench settles the stack before each section."""
    archive, five_have = Archive(), FiveHave()
    rows: list[Row] = []
    for projection, goal in ((archive, 0.5), (five_have, 0.3)):
        bodies = [bytes(b) for b, in stack.sql(
            "select body from archive where topic = any(%s)", list(projection.topics))]
        consumed_records, consumed = raw_consume(stack.info["kafka_bootstrap"], projection.topics)
        copied = raw_copy(stack.info["database_url"], bodies)
        floor_us = 1e6 / consumed + decoded(bodies) + 1e6 / copied
        with Sampled(f"{projection.name} projection rebuilding from the broker (one worker,"
                     " the bench's own process)", os.getpid()):
            read, rate = rebuilt(stack, projection)
        floor = min(consumed, copied)
        rows.append((f"{projection.name} projection, 1 worker rebuilding {read:,} records"
                     " from the broker, events/s per worker", f"{rate:,.0f}",
                     f"raw consume {consumed:,.0f} ({consumed_records:,} records), raw COPY"
                     f" {copied:,.0f} ({len(bodies):,} rows)",
                     f"{rate / floor:.2f} × the slower (goal ≥ {goal}); ceiling of consume +"
                     f" decode + COPY ({floor_us:.0f} µs) {1e6 / floor_us:,.0f} ev/s ="
                     f" {1e6 / floor_us / floor:.2f} ×"))
        if projection is five_have:
            rows.append((f"rebuild from the broker, chain + rates, {read:,} events, events/s",
                         f"{rate:,.0f}", f"raw kafka-python consume {consumed:,.0f}",
                         f"{rate / consumed:.2f} × consume (goal ≥ 0.5); the replay of the row"
                         " above; 1,000,000 events: `make bench-rebuild`"))
            read, shared = rebuilt(stack, projection, workers=2)
            rows.append((f"  the same, 2 worker processes (`--workers 2`), {read:,} events,"
                         " events/s", f"{shared:,.0f}", f"raw kafka-python consume"
                         f" {consumed:,.0f}; 1 worker {rate:,.0f}",
                         f"{shared / consumed:.2f} × consume; {shared / rate:.2f} × one worker;"
                         " each process imports for ~1.5 s before it reads: a large log shows"
                         " the gain (`make bench-rebuild`)"))
    return rows
