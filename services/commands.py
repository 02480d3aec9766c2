"""Commands at the HTTP edge: admit, hand to the decider, wait a bounded time for its answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import orjson
from psycopg import sql
from pydantic import ValidationError
from starlette.responses import Response

from events.commands import (
    CommandRequest,
    IssuedCommand,
    IssuedPointsCommand,
    PointsCommandRequest,
)
from events.envelope import Actor, Role
from events.log import EventLog, LogUnavailable
from events.topics import INCIDENT_COMMANDS, Topic
from projections.incident_decider import COMMAND_ROLES
from projections.store import Store
from services.auth import Principal
from services.errors import Forbidden, Invalid, Malformed, NotFound, Unavailable, json_response

Issued = TypeVar("Issued", IssuedCommand, IssuedPointsCommand)


def admit_command(body: Any, caller: Principal, *, now: datetime) -> IssuedCommand:
    """The command this body asks for, stamped with its issuer, or a refusal naming the field."""
    return admit_request(body, caller, now=now, request=CommandRequest, issued=IssuedCommand,
                         roles=COMMAND_ROLES)


def admit_request(body: Any, caller: Principal, *, now: datetime,
                  request: type[CommandRequest | PointsCommandRequest], issued: type[Issued],
                  roles: Mapping[str, frozenset[Role]]) -> Issued:
    """Any decider's command: its shape, then the caller's role for its type, then stamped."""
    if not isinstance(body, dict):
        raise Malformed("body", "a command is a JSON object")
    try:
        parsed = request.model_validate(body)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "reason": e["msg"]}
                  for e in exc.errors(include_url=False)]
        raise Invalid(errors[0]["field"], errors[0]["reason"], errors) from None
    kind = parsed.command.type
    if caller.role not in roles[kind]:
        raise Forbidden("command.type", f"role {caller.role} may not {kind}")
    return issued(**parsed.model_dump(), actor=Actor(id=caller.sub, role=caller.role),
                  recorded_at=now)


async def incident_grid(store: Store, incident_id: str, caller: Principal) -> str:
    """The incident's grid, if the caller may see it; otherwise it does not exist for them."""
    async with store.cursor() as cur:
        await cur.execute("select grid from five_have where incident_id = %s", [incident_id])
        found = await cur.fetchone()
    if found is None or found[0] is None or not caller.covers(found[0]):
        raise NotFound("incident_id", "no such incident in your scope")
    return str(found[0])


@dataclass(frozen=True)
class Outcomes:
    """A decider as the edge sees it: where its commands go, where it records its answers (the
    table and the columns naming the aggregate), and the path a client asks again at."""

    topic: Topic
    table: str
    about: tuple[str, ...]
    path: str


INCIDENT_OUTCOMES = Outcomes(INCIDENT_COMMANDS, "command_outcomes", ("incident_id",),
                             "/v1/commands")


async def decision_of(store: Store, command_id: UUID,
                      outcomes: Outcomes = INCIDENT_OUTCOMES) -> dict[str, Any] | None:
    columns = ("command_id", *outcomes.about, "status", "code", "reason", "events")
    async with store.dict_cursor() as cur:
        await cur.execute(sql.SQL("select {} from {} where command_id = %s").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(outcomes.table)),
            [command_id])
        found = await cur.fetchone()
    if found is None:
        return None
    events = found["events"]
    return {**found, "command_id": str(found["command_id"]),
            "events": orjson.loads(events) if isinstance(events, str | bytes) else events}


async def await_outcome(store: Store, command_id: UUID, timeout: float,
                        outcomes: Outcomes = INCIDENT_OUTCOMES) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        found = await decision_of(store, command_id, outcomes)
        if found is not None or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.01)


def answer(decided: dict[str, Any] | None, command_id: UUID,
           outcomes: Outcomes = INCIDENT_OUTCOMES) -> Response:
    """200 with the events, 409 with the decider's code and reason, or 202 until decided."""
    if decided is None:
        return json_response({"command_id": str(command_id), "status": "pending",
                              "status_url": f"{outcomes.path}/{command_id}"}, 202)
    if decided["status"] == "rejected":
        return json_response({"error": decided["code"], "command_id": str(command_id),
                              "errors": [{"field": "command", "reason": decided["reason"]}]},
                             409)
    return json_response(decided, 200)


async def ask(store: Store, event_log: EventLog, command: IssuedCommand | IssuedPointsCommand,
              outcomes: Outcomes, wait: float) -> Response:
    """The decider's answer: given already (a retry), or asked for and awaited up to `wait`."""
    decided = await decision_of(store, command.command_id, outcomes)
    if decided is None:
        try:
            await event_log.submit(command, outcomes.topic)
        except LogUnavailable as exc:
            raise Unavailable("broker", "the log did not acknowledge, retry later") from exc
        decided = await await_outcome(store, command.command_id, wait, outcomes)
    return answer(decided, command.command_id, outcomes)
