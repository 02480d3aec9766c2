"""The live feed: one LISTEN per query process, fanned out to every dashboard as SSE.

Projection commits announce themselves on `projections.live.CHANNEL`; each subscriber gets
only the events in its scope. The browser's EventSource cannot send headers, so this one
endpoint also takes the token as `access_token` (never logged: access logs are off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from events.envelope import covers
from projections.live import CHANNEL
from services.auth import Principal, caller_of
from services.errors import Unauthenticated

log = logging.getLogger(__name__)
router = APIRouter()
QUEUE = 100  # a dashboard that falls this far behind misses ticks, not the next figures


class Feed:
    """Listens on the channel and hands each notification to every subscriber's queue."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.database_url, autocommit=True) as conn:
                    await conn.execute(f"listen {CHANNEL}")
                    self.listening.set()
                    async for notice in conn.notifies():
                        message = orjson.loads(notice.payload)
                        for queue in list(self.subscribers):
                            if queue.qsize() < QUEUE:
                                queue.put_nowait(message)
            except psycopg.Error as exc:  # PostgreSQL restarted: listen again
                self.listening.clear()
                log.warning("live feed lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(1.0)

    @contextlib.contextmanager
    def subscription(self) -> Any:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers.add(queue)
        try:
            yield queue
        finally:
            self.subscribers.discard(queue)


def in_view(message: dict[str, Any], caller: Principal) -> dict[str, Any] | None:
    """The part of a notification the caller may see; None if nothing."""
    events = [e for e in message["events"] if e["grid"] and caller.covers(e["grid"])]
    # a busy batch names its places a level up: a place above the scope overlaps it too
    grids = [g for g in message["grids"]
             if caller.covers(g) or any(covers(g, mine) for mine in caller.scope)]
    return {"grids": grids, "events": events} if grids else None


async def subscriber(request: Request,
                     access_token: Annotated[str, Query(max_length=4096)] = "") -> Principal:
    """The caller, checked before the stream starts (a refusal inside it would be a 200 cut
    short): by the Bearer header, or by `access_token` for the browser's EventSource."""
    header = request.headers.get("authorization", "")
    token = header.partition(" ")[2].strip() if header.lower().startswith("bearer ") \
        else access_token
    if not token:
        raise Unauthenticated("authorization", "a Bearer token or access_token is required")
    return caller_of(request, token)


@router.get("/v1/live", response_class=EventSourceResponse)
async def live(request: Request, caller: Annotated[Principal, Depends(subscriber)]
               ) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: `applied` whenever the chain and rates under your scope change."""
    feed: Feed = request.app.state.feed
    with feed.subscription() as queue:
        yield ServerSentEvent(event="ready", data={"scope": caller.scope})
        while True:
            shown = in_view(await queue.get(), caller)
            if shown is not None:
                yield ServerSentEvent(event="applied", data=shown)
