"""Lag disclosure: the log position a read model was read at, and how far behind the log it is.

Every figure comes with the watermark it was computed at (partition -> next offset applied)
and the projection's lag in records. A client that has just written passes `min_offsets`
(from the ingest API's receipts) and the read waits, up to a bound, until they are applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from kafka import KafkaConsumer

from events.log import consumer, end_offsets, partitions_of
from events.topics import INCIDENTS, PATROLS
from projections.store import Store
from services.errors import Invalid, Refused

TOPICS = (INCIDENTS.name, PATROLS.name)
#: seconds: the log's ends are asked again after FRESH; over STALE, a read waits up to WAIT
FRESH, STALE, WAIT = 1.0, 3.0, 2.0

log = logging.getLogger(__name__)


class Behind(Refused):
    status, code = 409, "not_caught_up"


def parse_min_offsets(text: str) -> dict[tuple[str, int], int]:
    """'gridgov.incidents:3:1207,gridgov.patrols:0:88' -> {(topic, partition): offset}."""
    wanted: dict[tuple[str, int], int] = {}
    for item in filter(None, text.split(",")):
        try:
            topic, partition, offset = item.rsplit(":", 2)
            wanted[topic, int(partition)] = max(wanted.get((topic, int(partition)), -1),
                                                int(offset))
        except ValueError:
            raise Invalid("min_offsets", "a list of topic:partition:offset") from None
    return wanted


class Watermarks:
    def __init__(self, store: Store, bootstrap: str | None, projection: str) -> None:
        self.store, self.bootstrap, self.projection = store, bootstrap, projection
        self._kafka: KafkaConsumer | None = None
        self._ends: dict[tuple[str, int], int] = {}
        self._read_at = float("-inf")  # never asked
        self._asking: asyncio.Task[None] | None = None

    async def applied(self) -> dict[tuple[str, int], int]:
        async with self.store.cursor() as cur:
            await cur.execute("select topic, partition, next_offset from projection_offsets"
                              " where projection = %s", [self.projection])
            return {(t, p): o for t, p, o in await cur.fetchall()}

    async def log_ends(self) -> dict[tuple[str, int], int] | None:
        """The log's ends, asked of the broker at most once a second, one ask at a time; None
        when the broker has not told them for over STALE seconds.

        A read waits for an ask, up to WAIT, only when the ends it has are over STALE seconds
        old: on the embedded broker an ask reads each partition's last batch (`end_offsets`),
        tens to hundreds of milliseconds on a long log, and the read that fell due once a
        second had waited for it (the `/v1/rates` row's p99, BENCHMARKS.md). The figures are
        PostgreSQL's: with the broker gone a read still answers, its lag unknown."""
        if not self.bootstrap:
            return self._ends
        self.ask_when_due()
        if time.monotonic() - self._read_at > STALE and self._asking is not None:
            with contextlib.suppress(Exception):  # a failed ask is logged by `_asked`
                await asyncio.wait_for(asyncio.shield(self._asking), WAIT)
        return self._ends if time.monotonic() - self._read_at <= STALE else None

    def ask_when_due(self) -> None:
        """Start an ask in the background if the ends are over FRESH seconds old and none is
        out: every read does, and the query process at its start, so that its first read need
        not wait for the first ask."""
        if self.bootstrap and self._asking is None and time.monotonic() - self._read_at > FRESH:
            self._asking = asyncio.create_task(self._ask())
            self._asking.add_done_callback(self._asked)

    async def _ask(self) -> None:
        self._ends = await asyncio.to_thread(self._ask_broker)
        self._read_at = time.monotonic()

    def _asked(self, task: asyncio.Task[None]) -> None:
        self._asking = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("could not read the log's ends: %r", exc)

    def _ask_broker(self) -> dict[tuple[str, int], int]:
        if self._kafka is None:
            self._kafka = consumer(self.bootstrap or "")
        ends = end_offsets(self._kafka, partitions_of(self._kafka, TOPICS))
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def disclose(self) -> dict[str, Any]:
        applied, ends = await self.applied(), await self.log_ends()
        return {
            "projection": self.projection,
            "offsets": {f"{t}:{p}": o for (t, p), o in sorted(applied.items())},
            "lag_records": None if ends is None else
            sum(max(0, end - applied.get(tp, 0)) for tp, end in ends.items()),
        }

    async def wait_for(self, wanted: dict[tuple[str, int], int], timeout: float) -> None:
        """Return once every wanted offset is applied; 409 after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            applied = await self.applied()
            if all(applied.get(tp, 0) > offset for tp, offset in wanted.items()):
                return
            if time.monotonic() > deadline:
                raise Behind("min_offsets", "the read model has not applied these offsets yet;"
                             " retry shortly")
            await asyncio.sleep(0.02)

    def close(self) -> None:
        if self._kafka is not None:
            self._kafka.close()
