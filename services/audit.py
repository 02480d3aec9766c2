"""The auditor-only API: any matter's whole history, and a walk of the archive's hash chain."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from events.envelope import Role
from projections.audit import HISTORY, history_row, verify_archive
from services import personal
from services.auth import Caller, Principal
from services.errors import Forbidden, NotFound, json_response

router = APIRouter(prefix="/v1/audit")
AUDITORS = frozenset({Role.auditor, Role.admin})


def auditor(caller: Principal) -> Principal:
    if caller.role not in AUDITORS:
        raise Forbidden("authorization", "only auditors may use the audit API")
    return caller


@router.get("/history/{aggregate_id}")
async def history(request: Request, caller: Caller,
                  aggregate_id: Annotated[str, Path(max_length=64)]) -> Response:
    """Every event of an incident, dispute, patrol or account, in order, with its actor, both
    clocks, its place in the log and in the archive's hash chain."""
    auditor(caller)
    async with request.app.state.store.cursor() as cur:
        await cur.execute(HISTORY, [aggregate_id])
        rows = [history_row(r) for r in await cur.fetchall()]
    shown = [r for r in rows if r["event"].get("grid") and caller.covers(r["event"]["grid"])]
    if not shown:
        raise NotFound("aggregate_id", "no history in your scope")
    for row, event in zip(shown, await personal.disclosed(  # auditors see personal data masked
            request, caller, [r["event"] for r in shown]), strict=True):
        row["event"] = event
    return json_response({"aggregate_id": aggregate_id, "events": shown})


@router.get("/verify")
async def verify(
    request: Request, caller: Caller,
    topic: Annotated[str | None, Query(max_length=100)] = None,
    partition: Annotated[int | None, Query(ge=0, le=10_000)] = None,
    first: Annotated[int, Query(alias="from", ge=0)] = 0,
    last: Annotated[int | None, Query(alias="to", ge=0)] = None,
) -> Response:
    """Walk the hash chains (all, or one partition, or positions from..to): every break is
    named by its position."""
    auditor(caller)
    breaks = await asyncio.to_thread(
        verify_archive, request.app.state.settings.database_url or "", first=first, last=last,
        topic=topic, partition=partition)
    return json_response({"intact": not breaks, "breaks": [
        {"topic": b.topic, "partition": b.partition, "problem": b.problem} for b in breaks]})
