"""The chain projection folds each batch on to the matters it keeps in memory; whatever
happened to the timeline meanwhile (a rolled-back batch, another worker's event, a late
event), the chain and the facts it writes are those of one fold of the timeline it holds."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from events.codec import canonical
from events.envelope import Event
from events.log import Record
from events.topics import INCIDENTS
from projections.matters import FiveHave
from projections.replay import fresh_schema
from projections.runner import Delivery
from projections.sla import load
from projections.store import Store, in_schema
from tests.lifecycles import lifecycle
from tests.stack import RunningStack


class RolledBack(Exception):
    pass


def a_lifecycle_of_eight_events_or_more() -> list[Event[Any]]:
    rng = random.Random()
    while len(events := lifecycle(load(), "430382/101/003/07", rng,
                                  datetime(2026, 11, 2, 9, tzinfo=UTC))) < 8:
        pass
    return events


def deliveries(events: list[Event[Any]]) -> list[Delivery]:
    return [Delivery(Record(INCIDENTS.name, 0, n, e.aggregate_id.encode(), canonical(e)), e)
            for n, e in enumerate(events)]


async def write(store: Store, projection: FiveHave, events: list[Event[Any]]) -> None:
    async with store.transaction() as cur:
        await projection.write(cur, deliveries(events))


def folds(how: str) -> float:
    return REGISTRY.get_sample_value("gridgov_matters_folded_total", {"how": how}) or 0.0


def figures(url: str, schema: str, incident_id: str) -> tuple[list[Any], list[Any]]:
    with psycopg.connect(url, **in_schema(schema)) as conn:
        return (conn.execute("select * from five_have where incident_id = %s",
                             [incident_id]).fetchall(),
                conn.execute("select measure, day, grid, incident_id, event_id, value"
                             " from rate_facts where incident_id = %s order by 1, 2, 3, 5, 6",
                             [incident_id]).fetchall())


def one_fold(url: str, events: list[Event[Any]]) -> tuple[list[Any], list[Any]]:
    """What a worker that kept nothing writes for the same timeline, in one batch."""
    schema = f"kept_ref_{uuid.uuid4().hex[:8]}"
    fresh_schema(url, schema)

    async def run() -> None:
        store = await Store(url, schema=schema).open()
        try:
            await write(store, FiveHave(), events)
        finally:
            await store.close()

    asyncio.run(run())
    return figures(url, schema, events[0].aggregate_id)


def test_a_kept_matter_is_folded_again_whole_when_its_timeline_moved_under_it(
        stack: RunningStack) -> None:
    url = stack.info["database_url"]
    e = a_lifecycle_of_eight_events_or_more()
    incident_id = e[0].aggregate_id
    schema = f"kept_{uuid.uuid4().hex[:8]}"
    fresh_schema(url, schema)
    counted: list[tuple[float, float]] = []
    midway: list[tuple[list[Any], list[Any]]] = []

    def count() -> None:
        counted.append((folds("on"), folds("whole")))

    async def run() -> None:
        store = await Store(url, schema=schema).open()
        worker, other_worker = FiveHave(), FiveHave()
        try:
            count()
            await write(store, worker, e[1:3])  # new to this worker: folded from nothing
            await write(store, worker, e[3:4])  # kept: folded on
            count()
            with pytest.raises(RolledBack):  # kept holds e[4]; the timeline does not
                async with store.transaction() as cur:
                    await worker.write(cur, deliveries(e[4:5]))
                    raise RolledBack
            count()
            await write(store, worker, e[5:6])
            count()
            midway.append(figures(url, schema, incident_id))
            await write(store, other_worker, e[6:7])  # an event this worker never saw
            await write(store, worker, e[7:])  # read from its body, and folded on
            count()
            await write(store, worker, [e[0], e[4]])  # late: before the last folded
            count()
        finally:
            await store.close()

    asyncio.run(run())
    moved = [(on - on0, whole - whole0)
             for (on0, whole0), (on, whole) in zip(counted, counted[1:], strict=False)]
    assert moved[0] == (1, 1)
    assert moved[2] == (0, 1), "the kept fold held an event the timeline lost"
    assert midway == [one_fold(url, [*e[1:4], e[5]])]
    assert moved[3] == (1, 1), "the other worker's event read, then folded on"
    assert moved[4] == (0, 1), "a late event folds the whole timeline again"
    final = figures(url, schema, incident_id)
    assert final == one_fold(url, e)
    assert final[0], "the chain has a row"


def test_a_worker_keeps_only_its_most_recent_matters(stack: RunningStack) -> None:
    url = stack.info["database_url"]
    first, second = a_lifecycle_of_eight_events_or_more(), a_lifecycle_of_eight_events_or_more()
    schema = f"kept_{uuid.uuid4().hex[:8]}"
    fresh_schema(url, schema)
    counted: list[tuple[float, float]] = []

    async def run() -> None:
        store = await Store(url, schema=schema).open()
        worker = FiveHave()
        worker.remembered = 1
        try:
            await write(store, worker, first[:2])
            await write(store, worker, second[:2])  # the first matter is no longer kept
            counted.append((folds("on"), folds("whole")))
            await write(store, worker, second[2:3])
            await write(store, worker, first[2:3])
            counted.append((folds("on"), folds("whole")))
        finally:
            await store.close()

    asyncio.run(run())
    (on0, whole0), (on1, whole1) = counted
    assert (on1 - on0, whole1 - whole0) == (1, 1)
    assert figures(url, schema, first[0].aggregate_id) == one_fold(url, first[:3])
