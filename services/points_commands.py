"""Points commands at the HTTP edge (the ingest service): award, approve, redeem, publish.

`POST /v1/points/commands` checks the body, the caller's role for the command type and their
scope over the account's place (or the ranked compound), then hands the command to the points
decider and waits a bounded time for its answer: 200 with the events, 409 with a code and
reason (`insufficient_points`, `monthly_cap`, `daily_cap`, `already_paid`, ...), or 202 with a
status URL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import Response

from events.commands import IssuedPointsCommand, PointsCommandRequest
from events.envelope import Role
from events.topics import POINTS_COMMANDS
from projections.points_decider import COMMAND_ROLES
from projections.store import Store
from services.admission import CLOCK_SKEW
from services.auth import Caller, Principal
from services.commands import Outcomes, admit_request, answer, ask, decision_of
from services.errors import PENDING, Forbidden, Invalid, NotFound
from services.ingest import clock, read_body

POINTS_OUTCOMES = Outcomes(POINTS_COMMANDS, "points_command_outcomes", ("aggregate_id", "grid"),
                           "/v1/points/commands")

router = APIRouter(tags=["points"])


def admit_points_command(body: Any, caller: Principal, *, now: datetime) -> IssuedPointsCommand:
    """The points command this body asks for, stamped with its issuer, or a refusal."""
    command = admit_request(body, caller, now=now, request=PointsCommandRequest,
                            issued=IssuedPointsCommand, roles=COMMAND_ROLES)
    caller.require(command.grid, "grid")
    if caller.role == Role.resident and command.account_id != caller.sub:
        raise Forbidden("account_id", "a resident acts only on their own account")
    if command.occurred_at - now > CLOCK_SKEW:
        raise Invalid("occurred_at", "is more than 5 minutes in the future")
    return command


async def account_in_scope(store: Store, command: IssuedPointsCommand,
                           caller: Principal) -> None:
    """An account the caller cannot see does not exist for them, whatever place they name."""
    if command.account_id is None:
        return
    async with store.cursor() as cur:
        await cur.execute("select grid from points_accounts where account_id = %s",
                          [command.account_id])
        found = await cur.fetchone()
    if found is not None and not caller.covers(found[0]):
        raise NotFound("account_id", "no such account in your scope")


@router.post("/v1/points/commands", responses=PENDING)
async def post_points_command(request: Request, caller: Caller) -> Response:
    """Ask the points decider; its answer, or 202 with a status URL if it takes longer."""
    settings = request.app.state.settings
    command = admit_points_command(await read_body(request, settings.max_body_bytes), caller,
                                   now=clock())
    await account_in_scope(request.app.state.store, command, caller)
    return await ask(request.app.state.store, request.app.state.outbound.writer(), command,
                     POINTS_OUTCOMES, settings.command_wait_seconds)


@router.get("/v1/points/commands/{command_id}", responses=PENDING)
async def get_points_command(command_id: UUID, caller: Caller, request: Request) -> Response:
    """The points decider's answer to a command, once there is one (202 until then)."""
    decided = await decision_of(request.app.state.store, command_id, POINTS_OUTCOMES)
    if decided is not None and not caller.covers(decided["grid"]):
        raise NotFound("command_id", "no such command in your scope")
    return answer(decided, command_id, POINTS_OUTCOMES)
