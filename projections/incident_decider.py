"""The incident decider: `decide(command, chain) -> events`, and the SLA clock's `due(chain, now)`.

Pure: the chain comes in, the events (or a rejection) go out. Event ids are derived from the
command id (or the incident and deadline, for the SLA clock), so a retry cannot emit twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from events.commands import (
    Accept,
    Assign,
    Escalate,
    Extend,
    IssuedCommand,
    Mediate,
    Reject,
    Reopen,
    Resolve,
    Resume,
    Return,
    Suspend,
    Transfer,
    Verify,
)
from events.dispute import MediationRecorded
from events.envelope import Actor, Event, Payload, Role
from events.incident import (
    Category,
    IncidentAccepted,
    IncidentAssigned,
    IncidentClosed,
    IncidentEscalated,
    IncidentExtended,
    IncidentOverdue,
    IncidentRejected,
    IncidentReopened,
    IncidentResolved,
    IncidentResumed,
    IncidentReturned,
    IncidentReworkRequested,
    IncidentSuspended,
    IncidentTransferred,
    IncidentVerified,
)
from projections.five_have import RUNNING, Chain
from projections.sla import Rules

EVENT_IDS = uuid.UUID("6d1f8f0e-5c4b-4f39-9a3e-0d7e2b1c5a11")  # namespace for derived ids
SLA_CLOCK = Actor(id="gridgov-sla", role=Role.system)

_FIELD_WORKERS = frozenset({Role.worker, Role.grid_chief, Role.police, Role.mediator})
_APPROVERS = frozenset({Role.grid_chief, Role.supervisor})
COMMAND_ROLES: dict[str, frozenset[Role]] = {
    "assign": _APPROVERS,
    "accept": _FIELD_WORKERS,
    "resolve": _FIELD_WORKERS,
    "mediate": frozenset({Role.mediator, Role.grid_chief, Role.police}),
    "verify": _APPROVERS,
    "reopen": frozenset({Role.supervisor}),
    "escalate": _APPROVERS | {Role.police},
    "transfer": _APPROVERS,
    "reject": _APPROVERS,
    "return": _FIELD_WORKERS,
    "extend": _APPROVERS,
    "suspend": _APPROVERS,
    "resume": _APPROVERS,
}


class Rejected(Exception):
    """The command breaks an invariant; `code` is stable, `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def decide(command: IssuedCommand, chain: Chain, rules: Rules) -> list[Payload]:
    step, actor = command.command, command.actor
    me = (actor.id, actor.role.value)
    if actor.role not in COMMAND_ROLES[step.type]:
        raise Rejected("forbidden_role", f"role {actor.role} may not {step.type}")
    if chain.stage in ("unknown", "found"):
        raise Rejected("not_found", f"incident {chain.incident_id} has not been reported")
    if chain.stage == "rejected":
        raise Rejected("closed", "the incident was rejected at intake")
    if chain.stage == "closed" and not isinstance(step, Reopen):
        raise Rejected("closed", "a closed incident accepts nothing but a reopen")
    if chain.stage == "suspended" and not isinstance(step, Resume | Escalate | Extend):
        raise Rejected("suspended", "the incident is suspended; resume it first")

    def needs(*stages: str) -> None:
        if chain.stage not in stages:
            raise Rejected("invalid_stage",
                           f"cannot {step.type} an incident that is {chain.stage}")

    def take_on() -> list[Payload]:
        """Own it (accept), unless already the owner: 'resolved on the spot' is one request."""
        if chain.owner == me:
            return []
        if chain.owner is not None:
            raise Rejected("not_owned", f"owned by {chain.owner[0]}")
        if chain.assignee is not None and chain.assignee != me:
            raise Rejected("not_assignee", f"assigned to {chain.assignee[0]}")
        return [IncidentAccepted(deadline=chain.deadline or rules.deadline(
            Category(chain.category), chain.level, command.recorded_at))]

    match step:
        case Assign(assignee=person, level=level, deadline=deadline):
            needs("reported", "assigned")
            level = level or chain.level
            return [IncidentAssigned(assignee=person, level=level, deadline=deadline or
                                     rules.deadline(Category(chain.category), level,
                                                    command.recorded_at))]
        case Accept():
            if chain.owner is not None:
                raise Rejected("already_owned", f"already owned by {chain.owner[0]}")
            needs("reported", "assigned")
            return take_on()
        case Resolve(measures=measures, outcome=outcome):
            needs("reported", "assigned", "owned")
            return [*take_on(), IncidentResolved(measures=measures, outcome=outcome)]
        case Mediate(outcome=outcome, agreement=agreement):
            if chain.kind != "dispute":
                raise Rejected("not_a_dispute", "only disputes are mediated")
            needs("reported", "assigned", "owned")
            return [*take_on(), MediationRecorded(outcome=outcome, agreement=agreement)]
        case Verify(verdict=verdict, satisfaction=satisfaction, note=note):
            needs("resolved")
            if chain.links["resolve"].actor_id == actor.id:
                raise Rejected("self_verification", "the resolver cannot verify their own work")
            verified = IncidentVerified(verdict=verdict, satisfaction=satisfaction, note=note)
            if verdict == "accepted":
                return [verified, IncidentClosed()]
            return [verified, IncidentReworkRequested(reason=note or "verification failed")]
        case Reopen(reason=reason):
            needs("closed")
            return [IncidentReopened(reason=reason, deadline=rules.deadline(
                Category(chain.category), chain.level, command.recorded_at))]
        case Escalate(reason=reason, to_level=to_level):
            target = to_level or rules.above(chain.level)
            if target is None or rules.ladder.index(target) <= rules.ladder.index(chain.level):
                raise Rejected("invalid_level", f"cannot escalate above {chain.level}")
            return [IncidentEscalated(from_level=chain.level, to_level=target, reason=reason)]
        case Transfer(assignee=person, reason=reason):
            needs("assigned", "owned")
            return [IncidentTransferred(assignee=person, reason=reason)]
        case Reject(reason=reason, duplicate_of=duplicate_of, note=note):
            needs("reported")
            return [IncidentRejected(reason=reason, duplicate_of=duplicate_of, note=note)]
        case Return(reason=reason):
            needs("assigned", "owned")
            if actor.role not in _APPROVERS and me not in (chain.owner, chain.assignee):
                raise Rejected("not_owned", "only its assignee or owner can return it")
            return [IncidentReturned(reason=reason)]
        case Extend(deadline=deadline, reason=reason):
            if chain.deadline is None or deadline <= chain.deadline:
                raise Rejected("invalid_deadline", "an extension must move a deadline later")
            return [IncidentExtended(deadline=deadline, reason=reason)]
        case Suspend(reason=reason):
            needs("reported", "assigned", "owned")
            return [IncidentSuspended(reason=reason)]
        case Resume():
            needs("suspended")
            return [IncidentResumed()]
    raise Rejected("unknown_command", step.type)  # pragma: no cover - the union is closed


def due(chain: Chain, now: datetime, rules: Rules) -> list[Owed]:
    """What the SLA clock owes an incident at `now`: overdue once per deadline, then escalate.

    Each comes as (idempotency key, when it happened, payload). The time is the breach itself
    (the deadline, or the deadline plus the grace), never `now`, so a late tick or a replay
    emits byte-identical events.
    """
    if chain.stage not in RUNNING or chain.deadline is None:
        return []  # resolved in time is the owner's part; the verifier's delay is not overdue
    deadline = chain.deadline
    owed: list[Owed] = []
    if now > deadline and chain.overdue_for != deadline:
        # the key names the chain's position too: a deadline set again later is a new breach
        owed.append((f"sla/overdue/{deadline.isoformat()}/{chain.last_seq}", deadline,
                     IncidentOverdue(deadline=deadline)))
    already = any(at >= deadline for _, _, at, _ in chain.escalations)
    above = rules.above(chain.level)
    if now > deadline + rules.grace and not already and above is not None:
        owed.append((f"sla/escalate/{deadline.isoformat()}/{chain.last_seq}",
                     deadline + rules.grace,
                     IncidentEscalated(
            from_level=chain.level, to_level=above,
            reason=f"超期未办结，自动上报 (deadline {deadline.isoformat()})")))
    return owed


Owed = tuple[str, datetime, Payload]  # (idempotency key, when it happened, what)


def for_command(command: IssuedCommand, payloads: Sequence[Payload]) -> list[Owed]:
    return [(f"command/{command.command_id}/{i}", command.occurred_at, p)
            for i, p in enumerate(payloads)]


def envelopes(chain: Chain, owed: Sequence[Owed], *, actor: Actor, recorded_at: datetime,
              correlation_id: uuid.UUID | None = None) -> list[Event[Any]]:
    """Wrap decided payloads; ids derive from their keys, so deciding again emits the same."""
    return [
        Event[type(p)](  # type: ignore[misc,operator]
            event_id=uuid.uuid5(EVENT_IDS, f"{chain.incident_id}/{key}"),
            event_type=p.event_type, schema_version=p.schema_version,
            occurred_at=at, recorded_at=recorded_at, actor=actor, grid=chain.grid,
            aggregate_id=chain.incident_id, aggregate_seq=chain.last_seq + 1 + i,
            correlation_id=correlation_id, payload=p,
        )
        for i, (key, at, p) in enumerate(owed)
    ]
