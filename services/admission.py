"""Pure checks before an event may enter the log: shape, role, scope, clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from events.catalog import InvalidEvent, event_from_dict
from events.envelope import SERVER_OWNED, Event
from events.personal import sealed_fields
from services.auth import Principal
from services.errors import Forbidden, Invalid, Malformed

CLOCK_SKEW = timedelta(minutes=5)


def admit(body: Any, caller: Principal, *, now: datetime) -> Event[Any]:
    """The event this body describes, stamped by the server, or a refusal naming the field."""
    if not isinstance(body, dict):
        raise Malformed("body", "an event is a JSON object")
    for owned in SERVER_OWNED:
        if owned in body:
            raise Invalid(owned, "is set by the server from the token and clock, not the body")
    try:
        # appended as the app wrote it, at its version: the log is never rewritten, readers upcast
        event = event_from_dict({**body, "actor": {"id": caller.sub, "role": caller.role},
                                 "recorded_at": now}, as_written=True)
    except InvalidEvent as exc:
        raise Invalid(exc.errors[0]["field"], exc.errors[0]["reason"], exc.errors) from None
    if sealed := sealed_fields(event.payload):  # ciphertext is the server's to make (ingest)
        raise Invalid("payload", f"{sealed[0]} is personal data: send it as text, ingest seals it")
    payload = type(event.payload)
    if payload.decided:
        raise Forbidden("event_type", f"{event.event_type} is decided by a command:"
                        " POST /v1/commands")
    if caller.role not in payload.emitted_by:
        raise Forbidden("event_type", f"role {caller.role} may not emit {event.event_type}")
    caller.require(event.grid, "grid")
    if event.occurred_at - now > CLOCK_SKEW:
        raise Invalid("occurred_at", "is more than 5 minutes in the future")
    return event

