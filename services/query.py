"""The query API: supervisors and auditors read the read models, within their scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import FastAPI, Path, Query
from prometheus_client import make_asgi_app
from starlette.responses import Response

from events.envelope import place_path
from projections.store import Store
from services import errors
from services.auth import Caller
from services.errors import Invalid, NotFound, json_response
from services.settings import Settings

ARCHIVED = (
    "select seq, topic, partition, log_offset, position, hash, body from archive"
)


def _archived(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, topic, partition, log_offset, position, link, body = row
    return {
        "event": orjson.loads(body),
        "archive": {"seq": seq, "topic": topic, "partition": partition, "offset": log_offset,
                    "position": position, "hash": bytes(link).hex()},
    }


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.store = await Store(settings.database_url or "", max_size=8).open()
        yield
        await app.state.store.close()

    app = FastAPI(title="gridgov query", version="1", lifespan=lifespan)
    errors.install(app)
    app.mount("/metrics", make_asgi_app())

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/events/{event_id}")
    async def get_event(event_id: UUID, caller: Caller) -> Response:
        """One archived event with its place in the log and the hash chain."""
        async with app.state.store.cursor() as cur:
            await cur.execute(f"{ARCHIVED} where event_id = %s", [event_id])  # noqa: S608
            row = await cur.fetchone()
        # out of scope answers as absent: ids must not reveal what exists elsewhere
        if row is None or not caller.covers(orjson.loads(row[-1])["grid"]):
            raise NotFound("event_id", "no such event in your scope")
        return json_response(_archived(row))

    @app.get("/v1/places/{place:path}/events")
    async def place_events(
        place: Annotated[str, Path(max_length=100)],
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> Response:
        """Archived events at or below a place, oldest first; `next` continues the page."""
        try:
            place_path(place)
        except ValueError as exc:
            raise Invalid("place", str(exc)) from None
        caller.require(place)
        async with app.state.store.cursor() as cur:
            await cur.execute(
                f"{ARCHIVED} where (place = %s or place like %s) and seq > %s"  # noqa: S608
                " order by seq limit %s",
                [place, place.replace("_", r"\_") + "/%", after, limit],
            )
            rows = await cur.fetchall()
        items = [_archived(r) for r in rows]
        return json_response({
            "place": place,
            "items": items,
            "next": rows[-1][0] if len(rows) == limit else None,
        })

    return app
