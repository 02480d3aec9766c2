"""A projector reads the log as promptly as its readers need, and no more often: each fetch
costs the embedded broker a listing of the log (docs/ARCHITECTURE.md, "Reading the log")."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from events.log import FETCH_MAX_WAIT_MS, QUIET_AFTER, QUIET_FETCH_WAIT_MS, fetch_wait_ms
from projections.archive import Archive
from projections.matters import FiveHave
from projections.worker import Projector


@dataclass
class Patient:
    name: str = "patient"
    topics: tuple[str, ...] = ("gridgov.incidents",)
    tables: dict[str, str] = field(default_factory=dict)
    as_written: bool = False
    fetch_wait_ms: int = 321

    async def write(self, cur: object, deliveries: object) -> None:
        raise AssertionError("not applied here")


def test_the_projector_asks_the_broker_to_hold_fetches_as_long_as_its_projection_allows() -> None:
    projector = Projector(Patient(), bootstrap="127.0.0.1:9",
                          database_url="postgresql://nobody@127.0.0.1:9/none")

    async def wait_asked() -> int:
        consumer = projector.consumer_in_group()  # made, not started: nothing connects
        return int(consumer._fetch_max_wait_ms)

    assert asyncio.run(wait_asked()) == 321


def test_the_archive_waits_longer_than_the_chain_supervisors_watch_live() -> None:
    assert FiveHave.fetch_wait_ms == FETCH_MAX_WAIT_MS
    assert Archive.fetch_wait_ms > FETCH_MAX_WAIT_MS


def test_a_consumer_quiet_for_a_while_has_its_fetches_held_longer() -> None:
    assert fetch_wait_ms(FETCH_MAX_WAIT_MS, 0.0) == FETCH_MAX_WAIT_MS
    assert fetch_wait_ms(FETCH_MAX_WAIT_MS, QUIET_AFTER / 2) == FETCH_MAX_WAIT_MS
    assert fetch_wait_ms(FETCH_MAX_WAIT_MS, QUIET_AFTER) == QUIET_FETCH_WAIT_MS
    # a reader that waits longer anyway (the archive) keeps its own wait
    assert fetch_wait_ms(2 * QUIET_FETCH_WAIT_MS, 60.0) == 2 * QUIET_FETCH_WAIT_MS
