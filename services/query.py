"""The query API: supervisors and auditors read the read models, within their scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi import FastAPI, Path, Query, Request
from prometheus_client import make_asgi_app
from pydantic import AwareDatetime
from starlette.responses import Response

from events.catalog import event_from_json
from events.envelope import PLACE_PATTERN, place_path
from events.incident import Category
from events.log import EventLog
from projections.five_have import LINKS, timeline_order
from projections.matters import FiveHave
from projections.store import Store, below
from services import audit, auth, errors, live, personal, rates
from services.auth import Caller, Principal
from services.errors import Invalid, NotFound, json_response
from services.live import Feed
from services.settings import Settings
from services.watermark import Watermarks

DASHBOARD = FilePath(__file__).parent / "static" / "dashboard.html"
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


Stage = Literal["found", "reported", "assigned", "owned", "resolved", "verified", "closed",
                "rejected", "suspended"]


def read_models(database_url: str) -> Store:
    """The query service's reads (supervisors', auditors', residents'), each planned for the
    place it asks about. A plan cached for any place (PostgreSQL's after five runs of a
    statement) cannot use the grid index for a `like` on a parameter: it walked all of
    `five_have` in incident order, 67 ms a list of one grid beside a county of 100,000
    incidents, where planning for the grid took 0.2 ms (BENCHMARKS.md, 2026-11-28)."""
    return Store(database_url, max_size=8, custom_plans=True)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.store = await read_models(settings.database_url or "").open()
        app.state.watermarks = Watermarks(app.state.store, settings.kafka_bootstrap,
                                          FiveHave.name)
        app.state.watermarks.ask_when_due()
        app.state.feed = Feed(settings.database_url or "")
        app.state.feed.start()
        # break-glass reads and erasures are recorded on the audit topic before they happen
        app.state.log = EventLog(settings.kafka_bootstrap or "", client_id="gridgov-query")
        yield
        app.state.log.close()
        await app.state.feed.stop()
        app.state.watermarks.close()
        await app.state.store.close()

    app = FastAPI(title="gridgov query", version="1", lifespan=lifespan)
    errors.install(app)
    auth.install(app, settings)
    app.mount("/metrics", make_asgi_app())
    app.include_router(rates.router)
    app.include_router(audit.router)
    app.include_router(live.router)
    app.include_router(personal.router)

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> Response:
        """The supervisors' live page (static; it reads the APIs with the user's token)."""
        return Response(DASHBOARD.read_bytes(), media_type="text/html; charset=utf-8")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/events/{event_id}")
    async def get_event(event_id: UUID, caller: Caller, request: Request,
                        reason: personal.BreakGlass) -> Response:
        """One archived event with its place in the log and the hash chain; residents'
        personal data masked unless this is a break-glass read."""
        async with app.state.store.cursor() as cur:
            await cur.execute(f"{ARCHIVED} where event_id = %s", [event_id])  # noqa: S608
            row = await cur.fetchone()
        # out of scope answers as absent: ids must not reveal what exists elsewhere
        if row is None or not caller.covers(orjson.loads(row[-1])["grid"]):
            raise NotFound("event_id", "no such event in your scope")
        found = _archived(row)
        found["event"], = await personal.disclosed(
            request, caller, [found["event"]], reason=reason,
            about=(found["event"]["aggregate_id"], found["event"]["grid"]))
        return json_response(found)

    @app.get("/v1/places/{place:path}/events")
    async def place_events(
        place: Annotated[str, Path(max_length=100, pattern=PLACE_PATTERN)],
        caller: Caller,
        request: Request,
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
                [*below(place), after, limit],
            )
            rows = await cur.fetchall()
        items = [_archived(r) for r in rows]
        for item, event in zip(items, await personal.disclosed(
                request, caller, [i["event"] for i in items]), strict=True):
            item["event"] = event  # a listing is always masked: break-glass reads one matter
        return json_response({
            "place": place,
            "items": items,
            "next": rows[-1][0] if len(rows) == limit else None,
        })

    @app.get("/v1/incidents/{incident_id}")
    async def get_incident(
        incident_id: Annotated[str, Path(max_length=64)], caller: Caller, request: Request,
        reason: personal.BreakGlass,
    ) -> Response:
        """One incident's five-have chain and its full timeline; residents' personal data
        masked unless this is a break-glass read."""
        async with app.state.store.dict_cursor() as cur:
            await cur.execute("select * from five_have where incident_id = %s", [incident_id])
            found = await cur.fetchone()
            if found is None or found["grid"] is None or not caller.covers(found["grid"]):
                raise NotFound("incident_id", "no such incident in your scope")
            await cur.execute("select body from incident_timeline where incident_id = %s",
                              [incident_id])
            timeline = [event_from_json(bytes(r["body"])) for r in await cur.fetchall()]
        timeline.sort(key=lambda e: timeline_order(incident_id, e))
        shown = await personal.disclosed(request, caller,
                                         [e.model_dump(mode="json") for e in timeline],
                                         reason=reason, about=(incident_id, found["grid"]))
        return json_response({**chain_json(found), "timeline": shown,
                              "watermark": await app.state.watermarks.disclose()})

    async def list_chains(caller: Principal, place: str, kind: str | None, stage: str | None,
                          overdue: bool | None, category: str | None, since: datetime | None,
                          until: datetime | None, limit: int, after: str) -> Response:
        try:
            place_path(place)
        except ValueError as exc:
            raise Invalid("place", str(exc)) from None
        caller.require(place)
        where = ["(grid = %s or grid like %s)", "incident_id > %s"]
        params: list[Any] = [*below(place), after]
        for column, value in (("kind", kind), ("stage", stage), ("overdue", overdue),
                              ("category", category)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if since is not None:
            where.append("report_at >= %s")
            params.append(since)
        if until is not None:
            where.append("report_at < %s")
            params.append(until)
        async with app.state.store.dict_cursor() as cur:
            await cur.execute(
                f"select * from five_have where {' and '.join(where)}"  # noqa: S608
                " order by incident_id limit %s", [*params, limit])
            rows = await cur.fetchall()
        return json_response({"place": place, "items": [chain_json(r) for r in rows],
                              "next": rows[-1]["incident_id"] if len(rows) == limit else None,
                              "watermark": await app.state.watermarks.disclose()})

    @app.get("/v1/incidents")
    async def list_incidents(
        caller: Caller, place: Annotated[str, Query(max_length=100, pattern=PLACE_PATTERN)],
        stage: Stage | None = None, overdue: bool | None = None,
        category: Category | None = None, since: AwareDatetime | None = None,
        until: AwareDatetime | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
        after: Annotated[str, Query(max_length=64)] = "",
    ) -> Response:
        """Chains at or below a place, filtered; `next` continues the page."""
        return await list_chains(caller, place, None, stage, overdue,
                                 category.value if category else None, since, until, limit,
                                 after)

    @app.get("/v1/disputes")
    async def list_disputes(
        caller: Caller, place: Annotated[str, Query(max_length=100, pattern=PLACE_PATTERN)],
        stage: Stage | None = None, overdue: bool | None = None,
        since: AwareDatetime | None = None, until: AwareDatetime | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        after: Annotated[str, Query(max_length=64)] = "",
    ) -> Response:
        """Disputes (矛盾纠纷) at or below a place, with their mediation outcomes."""
        return await list_chains(caller, place, "dispute", stage, overdue, None, since, until,
                                 limit, after)

    from services.points_api import router as points  # 积分制 reads, kept in their own room
    app.include_router(points)
    return app


def chain_json(found: dict[str, Any]) -> dict[str, Any]:
    """A five_have row as the API shows it: the five links nested, the rest as they are."""
    shown = dict(found)
    links = {}
    for name in LINKS:
        by, role, at = (shown.pop(f"{name}_{part}") for part in ("by", "role", "at"))
        links[name] = {"by": by, "role": role, "at": at} if by else None
    durations = {name: shown.pop(name) for name in
                 ("report_to_own_s", "own_to_resolve_s", "resolve_to_supervise_s")}
    return {**shown, "links": links, "durations_seconds": durations}
