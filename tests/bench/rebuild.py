"""`make bench-rebuild`: rebuilding the read models from offset 0, beside the machine's limits.

A million events (GRIDGOV_BENCH_REBUILD_EVENTS) of incident lifecycles go straight onto the
log; once the live projectors hold them, the chain-and-rates projection is rebuilt from the
broker and from the archive (GRIDGOV_BENCH_REBUILD_FROM), by one worker and by two
(GRIDGOV_BENCH_REBUILD_WORKERS), beside a raw kafka-python consume of the same topics and a
raw COPY of the same bodies into PostgreSQL, measured in the same run. Appends to
BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import UTC, datetime, timedelta

from events.codec import canonical
from projections import sla
from projections.archive import Archive
from projections.matters import FiveHave
from projections.replay import replay
from tests.bench.baselines import raw_consume, raw_copy
from tests.bench.processes import consumers_paused, scratch_home, stack_processes
from tests.bench.report import record
from tests.lifecycles import lifecycle, report
from tests.stack import RunningStack, a_place

EVENTS = int(os.environ.get("GRIDGOV_BENCH_REBUILD_EVENTS", "1000000"))
#: worker processes per rebuild (`gridgov audit replay --workers`), each a rebuild of its own
WORKERS = [int(n) for n in os.environ.get("GRIDGOV_BENCH_REBUILD_WORKERS", "1,2").split(",")]
#: where the rebuilds read from: the broker, the archive, or both
SOURCES = os.environ.get("GRIDGOV_BENCH_REBUILD_FROM", "broker,archive").split(",")


def main() -> None:
    with scratch_home("rebuild") as home:
        stack = RunningStack(home).start()
        try:
            rng, rules = random.Random(11), sla.load()
            county = a_place().split("/")[0]
            grids = [f"{county}/{t:03d}/{c:03d}/{g:02d}" for t in range(1, 6) for c in range(1, 5)
                     for g in range(1, 6)]
            start = datetime(2025, 1, 1, tzinfo=UTC)
            events = []
            while len(events) < EVENTS:
                at = start + timedelta(minutes=rng.randrange(365 * 24 * 60))
                grid = rng.choice(grids)
                events += lifecycle(rules, grid, rng, at) if rng.random() < 0.3 \
                    else [report(grid, rng, at)]
            events = events[:EVENTS]
            print(f"  publishing {len(events):,} events", flush=True)  # noqa: T201
            # in chunks of 5,000: the embedded broker keeps each produced batch as an object and
            # lists them all on every fetch (docs/ARCHITECTURE.md), so 500 at a time made it
            # slow enough, a few hundred thousand events in, to expire the producer's batches;
            # and with the consumers held: their fetches of the growing log expired them too
            with consumers_paused(stack_processes(stack)):
                stack.publish(events, chunk=5000)
            topics = FiveHave.topics
            # the ends asked once (`until_applied`): reading the last batches of 5,000 for every
            # poll took most of a core from the projectors catching up
            stack.until_applied((Archive, FiveHave), timeout=7200)
            url, bootstrap = stack.info["database_url"], stack.info["kafka_bootstrap"]

            read, consumed = raw_consume(bootstrap, topics)
            copied = raw_copy(url, [canonical(e) for e in events])
            timed = {}
            for source, server in (("broker", bootstrap), ("archive", None)):
                if source not in SOURCES:
                    continue
                for workers in WORKERS:
                    started = time.perf_counter()
                    applied = asyncio.run(replay(FiveHave(), bootstrap=server, database_url=url,
                                                 schema=f"bench_{source}_{workers}",
                                                 workers=workers))
                    timed[source, workers] = (applied,
                                              applied / (time.perf_counter() - started))
        finally:
            stack.stop()

    baselines = {"broker": (consumed, f"raw kafka-python consume {consumed:,.0f} ({read:,}"
                                      " records)", "consume"),
                 "archive": (copied, f"raw COPY into PostgreSQL {copied:,.0f}", "COPY")}
    rows = [(f"rebuild chain + rates from the {source}, {applied:,} events,"
             f" {workers} worker{'s' if workers > 1 else ''}, events/s", f"{rate:,.0f}",
             baselines[source][1], f"{rate / baselines[source][0]:.2f} ×"
             f" {baselines[source][2]}") for (source, workers), (applied, rate) in timed.items()]
    record(f"rebuild, {EVENTS:,} events (`make bench-rebuild`)", rows)

if __name__ == "__main__":
    main()
