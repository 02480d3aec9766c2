"""The PostgreSQL edge: the pool, the migrations, and the offsets-in-database transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncCursor
from psycopg.rows import TupleRow, dict_row
from psycopg_pool import AsyncConnectionPool

Cursor = AsyncCursor[TupleRow]
TP = tuple[str, int]
MIGRATIONS = Path(__file__).parent / "migrations"


def below(place: str) -> tuple[str, str]:
    """Parameters for `(grid = %s or grid like %s)`: a place and everything under it. A place
    path holds no `%` but may hold `_`, which `like` would read as any character."""
    return place, place.replace("_", r"\_") + "/%"


def in_schema(schema: str | None, *, custom_plans: bool = False) -> dict[str, Any]:
    """Connection options that put every unqualified table in `schema` (a replay's own), and
    with `custom_plans` plan each statement for its own parameters (see `Store`)."""
    options = [*([f"-c search_path={schema}"] if schema else []),
               *(["-c plan_cache_mode=force_custom_plan"] if custom_plans else [])]
    return {"options": " ".join(options)} if options else {}


def migrate(database_url: str, *, schema: str | None = None) -> list[str]:
    """Apply the SQL files in projections/migrations in order, each once; returns those applied."""
    files = sorted(MIGRATIONS.glob("*.sql"))
    applied = []
    with psycopg.connect(database_url, autocommit=True, **in_schema(schema)) as conn:
        with conn.transaction():
            # one migrator at a time, whichever process starts first
            conn.execute("select pg_advisory_xact_lock(4711)")
            conn.execute(
                "create table if not exists schema_migrations"
                " (name text primary key, applied_at timestamptz not null default now())"
            )
            done = {row[0] for row in conn.execute("select name from schema_migrations")}
            for file in files:
                if file.name not in done:
                    conn.execute(file.read_text(encoding="utf-8"))
                    conn.execute("insert into schema_migrations (name) values (%s)", [file.name])
                    applied.append(file.name)
    return applied


class Store:
    """A pool of connections to the read models.

    A rebuild's store plans each statement for its own parameters (`custom_plans`): the plan
    PostgreSQL caches for a statement prepared five times is kept until the table's statistics
    change, and a rebuild fills fresh tables faster than autovacuum analyzes them. The plan
    cached while they were small read all of `five_have` for each batch's delete: 5.5 ms of
    PostgreSQL's ~15 ms for a batch of 50 (BENCHMARKS.md). The live projectors keep cached
    plans: autovacuum's analyze re-plans them as their tables grow, and the live path
    measured no better with custom plans. The query service plans each read for its place
    (`services.query.read_models`).
    """

    def __init__(self, database_url: str, *, max_size: int = 4,
                 schema: str | None = None, custom_plans: bool = False) -> None:
        self.pool = AsyncConnectionPool(
            database_url, min_size=1, max_size=max_size, open=False,
            kwargs={"autocommit": True, **in_schema(schema, custom_plans=custom_plans)},
        )

    async def open(self) -> Store:
        await self.pool.open(wait=True, timeout=30)
        return self

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def cursor(self) -> AsyncIterator[Cursor]:
        async with self.pool.connection() as conn, conn.cursor() as cur:
            yield cur

    @asynccontextmanager
    async def dict_cursor(self) -> AsyncIterator[AsyncCursor[dict[str, Any]]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            yield cur

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Cursor]:
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    async def offsets(self, projection: str) -> dict[TP, int]:
        async with self.cursor() as cur:
            await cur.execute(
                "select topic, partition, next_offset from projection_offsets"
                " where projection = %s",
                [projection],
            )
            return {(t, p): o for t, p, o in await cur.fetchall()}


async def lock_offsets(cur: Cursor, projection: str, tps: Iterable[TP]) -> dict[TP, int]:
    """Stored next offsets of these partitions, locked until the batch commits (both
    statements in one round trip)."""
    tps = sorted(set(tps))
    async with cur.connection.pipeline():
        await cur.execute(
            "insert into projection_offsets (projection, topic, partition, next_offset)"
            " select %s, t, p, 0 from unnest(%s::text[], %s::int[]) as u(t, p)"
            " on conflict do nothing",
            [projection, [t for t, _ in tps], [p for _, p in tps]],
        )
        await cur.execute(
            "select topic, partition, next_offset from projection_offsets"
            " where projection = %s and (topic, partition) in"
            " (select * from unnest(%s::text[], %s::int[]))"
            " order by topic, partition for update",
            [projection, [t for t, _ in tps], [p for _, p in tps]],
        )
    # read once the pipeline has ended: a read inside it would be a round trip of its own
    return {(t, p): o for t, p, o in await cur.fetchall()}


async def store_offsets(cur: Cursor, projection: str, next_offsets: dict[TP, int]) -> None:
    await cur.executemany(
        "update projection_offsets set next_offset = %s, updated_at = now()"
        " where projection = %s and topic = %s and partition = %s",
        [(o, projection, t, p) for (t, p), o in next_offsets.items()],
    )
