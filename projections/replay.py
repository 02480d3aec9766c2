"""Replay: fold the whole log again, from offset 0, into a schema of its own.

What an auditor (or a test after kill -9) compares the live read model with: the same
projection code, the same runner, a fresh schema, every record up to the log's end now. Only
the order of the work differs (`rebuilding`): the rate rollups are added up at the end, not
batch by batch, and come to the same sums.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import re
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from events.audit import PLATFORM, ProjectionPromoted
from events.envelope import Actor, Event
from events.log import (
    EventLog,
    KafkaAuth,
    Record,
    consumer,
    current_auth,
    end_offsets,
    partitions_of,
    use_auth,
)
from projections.rebuilding import rebuilding
from projections.runner import Delivery, Projection, Runner
from projections.store import TP, Cursor, Store, migrate

BATCH = 5000
#: (k, n): the k-th of n workers rebuilding together, which reads partitions p with p % n = k
Share = tuple[int, int]
#: the cyclic collector's thresholds while a rebuild runs (its defaults are 700, 10, 10)
REBUILD_COLLECTION = (50_000, 20, 20)


@contextmanager
def seldom_collected() -> Iterator[None]:
    """A rebuild's batch holds thousands of parsed events until it is written, none of them
    cyclic garbage: at the collector's default thresholds it walked each batch again and
    again, a quarter of a rebuild's CPU (86,000 events: 1.7-2.9 s of 5.8-10.7 s; at these
    thresholds 0.24-0.40 s). The thresholds are the process's: given back afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(*REBUILD_COLLECTION)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def fresh_schema(database_url: str, schema: str) -> None:
    """Drop and recreate `schema`, then apply every migration inside it, its tables unlogged.

    A rebuild is written to be compared, and promoted at most once: written to the WAL, a
    million-event rebuild wrote ~10 KB of it per event, most of it full-page images of the
    growing indexes. A crash empties unlogged tables, the rebuild's offsets with them, so a
    rebuild cut short by one starts again from 0; `promote` logs what it promotes first. The
    list of migrations applied stays logged: emptied, it would have a rebuild carried on
    (`replay(fresh=False)`) create every table again."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema) or schema == "public":
        raise ValueError(f"not a replay schema name: {schema!r}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        name = sql.Identifier(schema)
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(name))
        conn.execute(sql.SQL("create schema {}").format(name))
        migrate(database_url, schema=schema)
        for (table,) in conn.execute("select tablename from pg_tables where schemaname = %s"
                                     " and tablename <> 'schema_migrations'",
                                     [schema]).fetchall():
            conn.execute(sql.SQL("alter table {}.{} set unlogged").format(
                name, sql.Identifier(table)))


def read_log(bootstrap: str, topics: tuple[str, ...], start: dict[TP, int] | None = None,
             until: dict[TP, int] | None = None, share: Share = (0, 1),
             batch_size: int = BATCH) -> Generator[list[Record], None, None]:
    """Records of `topics` from `start` (offset 0) up to `until` (the end the log has now), of
    the partitions that are this `share`'s."""
    kafka = consumer(bootstrap, max_poll_records=batch_size)
    try:
        tps = [tp for tp in partitions_of(kafka, topics) if _ours(tp.partition, share)]
        ends = end_offsets(kafka, tps) if until is None else \
            {tp: until.get((tp.topic, tp.partition), 0) for tp in tps}
        kafka.assign(tps)
        for tp in tps:
            kafka.seek(tp, (start or {}).get((tp.topic, tp.partition), 0))
        left = {tp for tp in tps if ends[tp] > kafka.position(tp)}
        while left:
            batch = []
            for tp, records in kafka.poll(timeout_ms=500).items():
                batch += [Record(r.topic, r.partition, r.offset, r.key, r.value,
                                 tuple(r.headers or ())) for r in records if r.offset < ends[tp]]
                if kafka.position(tp) >= ends[tp]:
                    left.discard(tp)
                    kafka.pause(tp)
            if batch:
                yield batch
    finally:
        kafka.close()


def _ours(partition: int, share: Share) -> bool:
    return partition % share[1] == share[0]


def read_archive(database_url: str, topics: tuple[str, ...], share: Share = (0, 1),
                 batch_size: int = BATCH) -> Generator[list[Record], None, None]:
    """Every archived record of `topics` as the log held it, when the broker no longer holds
    the beginning: positions are dense per partition, so they serve as offsets. Read a page
    at a time, each its own short statement: one cursor open for the whole rebuild would hold
    a snapshot that keeps PostgreSQL from pruning the rows the rebuild rewrites meanwhile."""
    after: tuple[str, int, int] = ("", -1, -1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        while batch := conn.execute(
                "select topic, partition, position, aggregate_id, body from archive"
                " where topic = any(%s) and (topic, partition, position) > (%s, %s, %s)"
                " and partition %% %s = %s order by topic, partition, position limit %s",
                [list(topics), *after, share[1], share[0], batch_size]).fetchall():
            yield [Record(t, p, o, a.encode(), bytes(b)) for t, p, o, a, b in batch]
            after = batch[-1][:3]


def log_size(bootstrap: str | None, database_url: str, topics: tuple[str, ...]) -> int:
    """How many records a replay will read (for its progress bar)."""
    if bootstrap is None:
        with psycopg.connect(database_url) as conn:
            found = conn.execute("select count(*) from archive where topic = any(%s)",
                                 [list(topics)]).fetchone()
            return int(found[0]) if found else 0
    kafka = consumer(bootstrap)
    try:
        return sum(end_offsets(kafka, partitions_of(kafka, topics)).values())
    finally:
        kafka.close()


@dataclass
class AsOf:
    """A projection seeing only what the platform had recorded by `moment` (server time):
    what the dashboard could have said then. Later records still advance the offsets."""

    projection: Projection
    moment: datetime

    @property
    def name(self) -> str:
        return self.projection.name

    @property
    def topics(self) -> tuple[str, ...]:
        return self.projection.topics

    @property
    def tables(self) -> dict[str, str]:
        return self.projection.tables

    @property
    def as_written(self) -> bool:
        return self.projection.as_written

    @property
    def fetch_wait_ms(self) -> int:
        return self.projection.fetch_wait_ms

    async def write(self, cur: Cursor, deliveries: Sequence[Delivery]) -> None:
        known = [d for d in deliveries if d.event.recorded_at <= self.moment]
        if known:
            await self.projection.write(cur, known)

    async def settle(self, cur: Cursor) -> None:
        await self.projection.settle(cur)


async def replay(projection: Projection, *, bootstrap: str | None, database_url: str,
                 schema: str, as_of: datetime | None = None, until: dict[TP, int] | None = None,
                 fresh: bool = True, progress: Callable[[int], None] = lambda n: None,
                 workers: int = 1) -> int:
    """Rebuild `projection` from offset 0 into `schema` (or, not `fresh`, carry on from where
    that schema's rebuild stopped) up to `until` or the log's end; from the broker, or with no
    bootstrap from the archive; optionally as of a moment; by `workers` processes, each with
    its share of the partitions, as the live projectors share them. Returns the events
    applied."""
    if fresh:
        await asyncio.to_thread(fresh_schema, database_url, schema)
    else:  # a rebuild carried on by a newer release than began it: the tables it lacks
        await asyncio.to_thread(migrate, database_url, schema=schema)
    if workers == 1:
        return await _replay_share(projection, bootstrap, database_url, schema, as_of, until,
                                   (0, 1), progress)
    share = partial(_replay_in_process, projection, current_auth(), bootstrap, database_url,
                    schema, as_of, until, workers)
    store = await Store(database_url, schema=schema).open()
    try:
        told = sum((await store.offsets(projection.name)).values())
        # each worker in a process of its own: one process's Python kept one core busy and
        # left the other to PostgreSQL and the reading thread (BENCHMARKS.md)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) \
                as pool:
            loop = asyncio.get_running_loop()
            shares = [loop.run_in_executor(pool, share, k) for k in range(workers)]
            while not all(s.done() for s in shares):
                await asyncio.wait(shares, timeout=0.5)
                # the workers' progress is what they committed: their offsets
                done = sum((await store.offsets(projection.name)).values())
                progress(done - told)
                told = done
        return sum([s.result() for s in shares])
    finally:
        await store.close()


def _replay_in_process(projection: Projection, auth: KafkaAuth, bootstrap: str | None,
                       database_url: str, schema: str, as_of: datetime | None,
                       until: dict[TP, int] | None, workers: int, k: int) -> int:
    """One worker's share of a rebuild, in a process of its own."""
    use_auth(auth)
    return asyncio.run(_replay_share(projection, bootstrap, database_url, schema, as_of, until,
                                     (k, workers), lambda n: None))


async def _replay_share(projection: Projection, bootstrap: str | None, database_url: str,
                        schema: str, as_of: datetime | None, until: dict[TP, int] | None,
                        share: Share, progress: Callable[[int], None]) -> int:
    store = await Store(database_url, schema=schema, custom_plans=True).open()
    seen = AsOf(projection, as_of) if as_of else projection
    runner, applied = Runner(seen, store), 0
    start = await store.offsets(projection.name)
    # a batch locks each matter it refolds until it commits (projections/matters.py): the
    # workers' batches together take no more locks than one worker's did
    size = BATCH // share[1]
    batches = read_log(bootstrap, projection.topics, start, until, share, size) if bootstrap \
        else read_archive(database_url, projection.topics, share, size)
    # the next batch is read while this one is written: the two take turns on one core otherwise
    ahead = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
    try:
        with seldom_collected(), rebuilding():
            while (batch := await ahead) is not None:
                ahead = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
                applied += (await runner.apply(batch)).applied
                progress(len(batch))
            async with store.transaction() as cur:  # what the batches held back, rolled up
                await seen.settle(cur)
    finally:
        await asyncio.wait([ahead])  # a generator still running in its thread cannot be closed
        batches.close()
        await store.close()
    return applied


@dataclass
class TableDiff:
    table: str
    only_live: int
    only_shadow: int
    examples: list[str]

    @property
    def empty(self) -> bool:
        return self.only_live == self.only_shadow == 0


def compare(conn: psycopg.Connection[Any], projection: Projection, shadow: str,
            live: str = "public", examples: int = 3) -> list[TableDiff]:
    """Row by row, every table of the projection, live against its rebuild."""
    found = []
    for table, columns in projection.tables.items():
        cols = sql.SQL(columns)  # fixed column lists declared by the projection
        sides = []
        for one, other in ((live, shadow), (shadow, live)):
            query = sql.SQL("select {c} from {a}.{t} except all select {c} from {b}.{t}")\
                .format(c=cols, a=sql.Identifier(one), b=sql.Identifier(other),
                        t=sql.Identifier(table))
            sides.append(conn.execute(query).fetchall())
        found.append(TableDiff(table, len(sides[0]), len(sides[1]),
                               [f"live {r}" for r in sides[0][:examples]]
                               + [f"shadow {r}" for r in sides[1][:examples]]))
    return found


async def diff(projection: Projection, *, bootstrap: str | None, database_url: str,
               shadow: str, workers: int = 1) -> list[TableDiff]:
    """The live read model against its rebuild at the same log position: the live projector
    is held at its watermark (its offsets locked) while the rebuild catches up to it and the
    tables are compared. An empty diff is the proof the read model is a function of the log."""
    with psycopg.connect(database_url) as conn, conn.transaction():
        rows = conn.execute("select topic, partition, next_offset from projection_offsets"
                            " where projection = %s for update", [projection.name]).fetchall()
        watermark = {(t, p): o for t, p, o in rows}
        if bootstrap is not None:  # an archive rebuild has no broker offsets to stop at
            rebuilt = conn.execute(sql.SQL("select topic, partition, next_offset from {}."
                                           "projection_offsets where projection = %s")
                                   .format(sql.Identifier(shadow)), [projection.name])
            ahead = any(o > watermark.get((t, p), 0) for t, p, o in rebuilt.fetchall())
            await replay(projection, bootstrap=bootstrap, database_url=database_url,
                         schema=shadow, until=watermark, fresh=ahead, workers=workers)
        return compare(conn, projection, shadow)


class PromotionRefused(RuntimeError):
    """The rebuild differs from the live model and nobody said why it should win."""


async def promote(projection: Projection, *, bootstrap: str, database_url: str, shadow: str,
                  actor: Actor, reason: str | None = None, workers: int = 1
                  ) -> list[TableDiff]:
    """Blue/green: swap a rebuilt read model in for the live one, atomically.

    The live projector is held at its watermark while the rebuild catches up to it and the
    two are compared. Identical, the swap proceeds; different, only with a `reason`, which
    goes into the log first (`audit.projection_promoted`). The live tables move to the
    shadow schema (kept for a look back); the projector carries on from the same offsets.
    """
    with psycopg.connect(database_url) as conn, conn.transaction():
        rows = conn.execute("select topic, partition, next_offset from projection_offsets"
                            " where projection = %s for update", [projection.name]).fetchall()
        watermark = {(t, p): o for t, p, o in rows}
        await replay(projection, bootstrap=bootstrap, database_url=database_url,
                     schema=shadow, until=watermark, fresh=False, workers=workers)
        found = compare(conn, projection, shadow)
        if not all(t.empty for t in found):
            if not reason:
                raise PromotionRefused(", ".join(
                    f"{t.table}: {t.only_live} rows only live, {t.only_shadow} only rebuilt"
                    for t in found if not t.empty))
            await _record_promotion(bootstrap, projection, actor, reason, found, watermark)
        for table in projection.tables:  # what goes live is crash-safe again
            conn.execute(sql.SQL("alter table {}.{} set logged").format(
                sql.Identifier(shadow), sql.Identifier(table)))
        # through a schema of its own: index names are unique per schema, not per table
        passing = sql.Identifier(f"{shadow}__swap")
        conn.execute(sql.SQL("create schema {}").format(passing))
        for table in projection.tables:
            conn.execute(sql.SQL("alter table public.{t} set schema {passing};"
                                 " alter table {shadow}.{t} set schema public;"
                                 " alter table {passing}.{t} set schema {shadow}").format(
                t=sql.Identifier(table), passing=passing, shadow=sql.Identifier(shadow)))
        conn.execute(sql.SQL("drop schema {}").format(passing))
    return found


async def _record_promotion(bootstrap: str, projection: Projection, actor: Actor, reason: str,
                            found: list[TableDiff], watermark: dict[TP, int]) -> None:
    now = datetime.now(UTC)
    event = Event[ProjectionPromoted](
        event_id=uuid.uuid4(), event_type=ProjectionPromoted.event_type,
        schema_version=ProjectionPromoted.schema_version, occurred_at=now, recorded_at=now,
        actor=actor, grid=PLATFORM, aggregate_id=f"projection-{projection.name}",
        aggregate_seq=int(now.timestamp()), payload=ProjectionPromoted(
            projection=projection.name, reason=reason,
            differences={t.table: (t.only_live, t.only_shadow) for t in found if not t.empty},
            watermark={f"{t}:{p}": o for (t, p), o in sorted(watermark.items())}))
    log = EventLog(bootstrap, client_id="gridgov-audit")
    try:
        await log.append_many([event])
    finally:
        log.close()
