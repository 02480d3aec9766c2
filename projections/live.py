"""Live updates: a projection commit announces what it applied on a PostgreSQL channel.

`pg_notify` inside the batch's transaction is delivered only if the batch commits, so a
dashboard never hears of a change the read models do not hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from events.envelope import Event
from projections.store import Cursor

CHANNEL = "gridgov_live"
NEWEST = 20  # how many of a batch's events the ticker shows; a NOTIFY payload stays < 8 kB


def headline(event: Event[Any]) -> dict[str, Any]:
    """What the ticker shows of an event: no personal data, only what happened where."""
    payload = event.payload
    title = getattr(payload, "title", None) or getattr(payload, "summary", None)
    return {"event_type": event.event_type, "grid": event.grid,
            "aggregate_id": event.aggregate_id, "occurred_at": event.occurred_at.isoformat(),
            "title": title[:60] if isinstance(title, str) and event.event_type.startswith(
                "incident.") else None}


async def announce(cur: Cursor, events: Sequence[Event[Any]]) -> None:
    if not events:
        return
    newest = sorted(events, key=lambda e: e.occurred_at)[-NEWEST:]
    message = {"applied": len(events), "grids": sorted({e.grid for e in events if e.grid}),
               "events": [headline(e) for e in newest]}
    await cur.execute("select pg_notify(%s, %s)", [CHANNEL, orjson.dumps(message).decode()])
