"""Live updates: a projection commit announces what it applied on a PostgreSQL channel.

`pg_notify` inside the batch's transaction is delivered only if the batch commits, so a
dashboard never hears of a change the read models do not hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from events.envelope import Event
from projections.rebuilding import is_rebuilding
from projections.store import Cursor

CHANNEL = "gridgov_live"
NEWEST = 20  # how many of a batch's events the ticker shows
LIMIT = 7500  # bytes: PostgreSQL refuses a NOTIFY payload of 8000 or more
SOMEWHERE = "*"  # the place a batch names when even its counties do not fit: every scope


def headline(event: Event[Any]) -> dict[str, Any]:
    """What the ticker shows of an event: no personal data, only what happened where."""
    payload = event.payload
    title = getattr(payload, "title", None) or getattr(payload, "summary", None)
    return {"event_type": event.event_type, "grid": event.grid,
            "aggregate_id": event.aggregate_id, "occurred_at": event.occurred_at.isoformat(),
            "title": title[:60] if isinstance(title, str) and event.event_type.startswith(
                "incident.") else None}


def message(events: Sequence[Event[Any]]) -> bytes:
    """What a batch announces, kept under the NOTIFY limit: fewer ticker lines first, then
    the touched places named a level higher (a dashboard still hears that its place moved)."""
    newest = [headline(e) for e in sorted(events, key=lambda e: e.occurred_at)[-NEWEST:]]
    places = sorted({e.grid for e in events if e.grid})
    while True:
        body = orjson.dumps({"applied": len(events), "grids": places, "events": newest})
        if len(body) < LIMIT:
            return body
        if newest:
            newest = newest[len(newest) // 2 + 1:]
        elif any("/" in p for p in places):
            places = sorted({p.rsplit("/", 1)[0] for p in places})
        else:
            places = [SOMEWHERE]


async def announce(cur: Cursor, events: Sequence[Event[Any]]) -> None:
    if events and not is_rebuilding():  # a rebuild's news is history
        await cur.execute("select pg_notify(%s, %s)", [CHANNEL, message(events).decode()])
