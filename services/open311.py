"""Open311 GeoReport v2 over the same events: civic apps file and follow matters here.

All of it lives under one root, `/open311/v2`, in the ingest service: an Open311 client knows
one endpoint and both posts and reads there, and ingest already holds the log (for the write)
and a pool on the read models (for the reads). A posted request is an `incident.reported` v2
event admitted, authorised and receipted exactly as `POST /v1/events` admits one (`admit`,
`publish`); a read folds each matter's timeline with the chain's own `fold`, so Open311 shows
what `/v1/incidents` shows, in the spec's words. The mapping is pure, in
`services/open311_terms.py` (services, the form, errors, XML) and `services/open311_requests.py`
(a matter as a service request); this module parses, authorises, reads and answers.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from events.catalog import event_from_json
from events.envelope import Event
from projections.store import Store, below
from services import open311_requests as read
from services import open311_terms as terms
from services.admission import admit
from services.auth import Principal, caller_of
from services.errors import (
    IdConflict,
    Invalid,
    NotFound,
    Refused,
    Unauthenticated,
    Unavailable,
)
from services.ingest import clock, publish, read_bytes
from services.settings import Settings

PREFIX = "/open311/v2"
MEDIA = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}


def render(fmt: str, root: str, data: Any, status: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    body = terms.to_xml(root, data) if fmt == "xml" else orjson.dumps(data)
    return Response(body, status, headers, media_type=MEDIA[fmt])


class Open311Route(APIRoute):
    """Every refusal on these routes answers as the spec says, an array of {code, description},
    in the format the path asked for (JSON unless .xml)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            fmt = "xml" if request.url.path.endswith(".xml") else "json"
            try:
                return await handler(request)
            except Refused as refused:
                status, errors = terms.errors_of(refused)
                return render(fmt, "errors", errors, status,
                              None if refused.retry_after is None else
                              {"Retry-After": str(refused.retry_after)})
            except RequestValidationError as exc:
                return render(fmt, "errors", [
                    {"code": 400, "description": f"{e['loc'][-1]}: {e['msg']}"}
                    for e in exc.errors()], 400)

        return answer


router = APIRouter(prefix=PREFIX, tags=["open311"], route_class=Open311Route)


def format_of(request: Request) -> str:
    fmt = str(request.path_params.get("fmt", ""))
    if fmt not in terms.FORMATS:
        raise NotFound("format", "ask for .json or .xml")
    return fmt


def authenticate(request: Request, api_key: str | None = None) -> Principal:
    """The caller: the token given as `api_key` (form or query, as the spec has it), as a
    Bearer token, or as the password of HTTP Basic (for clients that only read a .netrc)."""
    token = api_key or request.query_params.get("api_key")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if not token and scheme.lower() == "bearer":
        token = credentials.strip()
    elif not token and scheme.lower() == "basic":
        try:
            token = base64.b64decode(credentials.strip(), validate=True).decode().partition(
                ":")[2]
        except ValueError:  # not base64, not ASCII, not UTF-8
            raise Unauthenticated("api_key", "HTTP Basic credentials are not base64") from None
    if not token:
        raise Unauthenticated("api_key", "an api_key (a gridgov token) is required")
    return caller_of(request, token)


async def authenticated(request: Request) -> Principal:
    return authenticate(request)


def language(request: Request) -> str:
    return terms.language(request.headers.get("accept-language"))


def sla_rules(request: Request) -> terms.Rules:
    settings: Settings = request.app.state.settings
    return terms.rules(settings.sla_file)


Fmt = Annotated[str, Depends(format_of)]
Caller = Annotated[Principal, Depends(authenticated)]
Lang = Annotated[str, Depends(language)]
SLA = Annotated[terms.Rules, Depends(sla_rules)]
Listed = Annotated[list[str] | None, Query()]


@router.get("/services.{fmt}")
async def services(fmt: Fmt, caller: Caller, lang: Lang, sla: SLA,
                   jurisdiction_id: str | None = None) -> Response:
    """GET Service List: the incident categories, in Chinese or English (Accept-Language)."""
    terms.jurisdiction(jurisdiction_id, caller)
    return render(fmt, "services", terms.service_list(lang, sla))


@router.get("/services/{service_code}.{fmt}")
async def service_definition(service_code: str, fmt: Fmt, caller: Caller, lang: Lang,
                             jurisdiction_id: str | None = None) -> Response:
    """GET Service Definition: the optional attributes a request of this service may carry."""
    terms.jurisdiction(jurisdiction_id, caller)
    return render(fmt, "service_definition",
                  terms.definition(terms.category(service_code, NotFound), lang))


@router.post("/requests.{fmt}", status_code=201)
async def post_request(request: Request, fmt: Fmt, lang: Lang, sla: SLA) -> Response:
    """POST Service Request (form-encoded): an `incident.reported` event through ingest's own
    admission and receipts. Its id is derived from the caller and the fields sent, so a retry
    answers the same `service_request_id` and appends nothing."""
    settings: Settings = request.app.state.settings
    fields = terms.parse_form(await read_bytes(request, settings.max_body_bytes),
                              request.headers.get("content-type"))
    caller = authenticate(request, terms.single(fields, "api_key"))
    submitted = terms.submission(fields)
    grid = terms.grid_for(submitted.jurisdiction_id, caller)
    now = clock()
    body = terms.report_body(submitted, event_id=terms.request_event_id(caller.sub, fields),
                             grid=grid, now=now)
    event = admit(body, caller, now=now)
    outcome = (await publish(request, [event]))[0]
    # the id digests caller and fields, so a conflict on it is this request sent before (its
    # first copy carries an earlier clock): the same request, answered the same way
    if isinstance(outcome, Refused) and not isinstance(outcome, IdConflict):
        raise outcome
    return render(fmt, "service_requests", [{
        "service_request_id": event.aggregate_id,
        "service_notice": terms.notice(sla, submitted.category, None, lang),
        "account_id": caller.sub}], 201)


@router.get("/requests.{fmt}")
async def service_requests(
    request: Request, fmt: Fmt, caller: Caller, lang: Lang, sla: SLA,
    service_request_id: Listed = None, service_code: Listed = None,
    start_date: str | None = None, end_date: str | None = None, status: Listed = None,
    jurisdiction_id: str | None = None,
) -> Response:
    """GET Service Requests in the caller's scope: reported in the last 90 days (or a window of
    at most 90 days), at most 1000, newest first; `service_request_id` overrides the rest."""
    where, params = scope_sql(caller, terms.jurisdiction(jurisdiction_id, caller))
    if ids := read.listed(service_request_id):
        if len(ids) > terms.LIMIT:
            raise Invalid("service_request_id", f"at most {terms.LIMIT} ids")
        where.append("incident_id = any(%s)")
        params.append([i for i in ids if terms.possible(i)])
    else:
        start, end = read.window(start_date, end_date, now=clock())
        where.append("report_at between %s and %s")
        params += [start, end]
        if codes := [terms.category(c).value for c in read.listed(service_code)]:
            where.append("category = any(%s)")
            params.append(codes)
        if (stages := read.stages(read.listed(status))) is not None:
            where.append("stage = any(%s)")
            params.append(stages)
    found = await chains(request.app.state.store, where, params)
    return render(fmt, "service_requests", [read.service_request(i, timeline, sla, lang)
                                            for i, timeline in found])


@router.get("/requests/{service_request_id}.{fmt}")
async def service_request(request: Request, service_request_id: str, fmt: Fmt, caller: Caller,
                          lang: Lang, sla: SLA, jurisdiction_id: str | None = None
                          ) -> Response:
    """GET Service Request: one matter, as an array of one. Absent and outside the caller's
    scope (or the jurisdiction named) look alike: 404. One just posted is waited for."""
    where, params = scope_sql(caller, terms.jurisdiction(jurisdiction_id, caller))
    if not terms.possible(service_request_id):
        raise NotFound("service_request_id", "no such service request in your scope")
    where.append("incident_id = %s")
    params.append(service_request_id)
    store: Store = request.app.state.store
    found = await chains(store, where, params)
    if not found and await posted(store, service_request_id):
        deadline = time.monotonic() + request.app.state.settings.read_wait_seconds
        while not found and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            found = await chains(store, where, params)
    if not found:
        raise NotFound("service_request_id", "no such service request in your scope")
    return render(fmt, "service_requests", [read.service_request(*found[0], sla, lang)])


@router.api_route("/{anything:path}", methods=["GET", "POST"], include_in_schema=False)
async def elsewhere(anything: str) -> Response:
    raise NotFound("path", f"no Open311 resource {anything!r}; see {PREFIX}/services.json")


def scope_sql(caller: Principal, place: str | None) -> tuple[list[str], list[Any]]:
    """Reported matters at or below the caller's scope (and the place named, if one is)."""
    where, params = ["report_at is not null"], []
    for prefixes in (list(caller.scope), [place] if place else []):
        if not prefixes or "*" in prefixes:
            continue
        where.append("(" + " or ".join(["grid = %s or grid like %s"] * len(prefixes)) + ")")
        for prefix in prefixes:
            params += below(prefix)
    if not caller.scope:
        where.append("false")
    return where, params


async def chains(store: Store, where: list[str], params: list[Any]
                 ) -> list[tuple[str, list[Event[Any]]]]:
    """The matching matters, newest first (at most 1000), each with its timeline."""
    try:
        async with store.cursor() as cur:
            # planned for these places, never from a cache (`prepare=False`): a plan kept for
            # any place cannot use the grid index for a `like` on a parameter
            # (`services.query.read_models`); ingest's own statements keep theirs
            await cur.execute(
                f"select incident_id from five_have where {' and '.join(where)}"  # noqa: S608
                " order by report_at desc, incident_id limit %s", [*params, terms.LIMIT],
                prepare=False)
            ids = [row[0] for row in await cur.fetchall()]
            await cur.execute("select incident_id, body from incident_timeline"
                              " where incident_id = any(%s)", [ids])
            rows = await cur.fetchall()
    except psycopg.Error as exc:
        raise Unavailable("database", "the read models are unavailable, retry later") from exc
    timelines: dict[str, list[Event[Any]]] = {incident_id: [] for incident_id in ids}
    for incident_id, body in rows:
        timelines[incident_id].append(event_from_json(bytes(body)))
    return list(timelines.items())


async def posted(store: Store, service_request_id: str) -> bool:
    """Whether a POST minted this id and its event was appended (the chain may lag)."""
    event_id = terms.event_id_of(service_request_id)
    if event_id is None:
        return False
    try:
        async with store.cursor() as cur:
            await cur.execute("select 1 from ingest_receipts where event_id = %s", [event_id])
            return await cur.fetchone() is not None
    except psycopg.Error as exc:
        raise Unavailable("database", "receipts are unavailable, retry later") from exc
