"""Commands at the HTTP edge: admit, hand to the decider, wait a bounded time for its answer."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import ValidationError

from events.commands import CommandRequest, IssuedCommand
from events.envelope import Actor
from projections.incident_decider import COMMAND_ROLES
from projections.store import Store
from services.auth import Principal
from services.errors import Forbidden, Invalid, Malformed, NotFound


def admit_command(body: Any, caller: Principal, *, now: datetime) -> IssuedCommand:
    """The command this body asks for, stamped with its issuer, or a refusal naming the field."""
    if not isinstance(body, dict):
        raise Malformed("body", "a command is a JSON object")
    try:
        request = CommandRequest.model_validate(body)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]}
                  for e in exc.errors(include_url=False)]
        raise Invalid(errors[0]["field"], errors[0]["reason"], errors) from None
    kind = request.command.type
    if caller.role not in COMMAND_ROLES[kind]:
        raise Forbidden("command.type", f"role {caller.role} may not {kind}")
    return IssuedCommand(**request.model_dump(), actor=Actor(id=caller.sub, role=caller.role),
                         recorded_at=now)


async def incident_grid(store: Store, incident_id: str, caller: Principal) -> str:
    """The incident's grid, if the caller may see it; otherwise it does not exist for them."""
    async with store.cursor() as cur:
        await cur.execute("select grid from five_have where incident_id = %s", [incident_id])
        found = await cur.fetchone()
    if found is None or found[0] is None or not caller.covers(found[0]):
        raise NotFound("incident_id", "no such incident in your scope")
    return str(found[0])


async def decision_of(store: Store, command_id: UUID) -> dict[str, Any] | None:
    async with store.dict_cursor() as cur:
        await cur.execute(
            "select command_id, incident_id, status, code, reason, events from command_outcomes"
            " where command_id = %s", [command_id])
        found = await cur.fetchone()
    if found is None:
        return None
    events = found["events"]
    return {**found, "command_id": str(found["command_id"]),
            "events": orjson.loads(events) if isinstance(events, str | bytes) else events}


async def await_outcome(store: Store, command_id: UUID, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        found = await decision_of(store, command_id)
        if found is not None or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.01)
