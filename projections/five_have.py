"""The five-have chain (五有): per incident, who inspected, reported, owned, resolved, supervised.

`evolve(chain, event)` is pure and ignores a step its stage does not allow, so no sequence of
events can make two owners or a supervise link before a resolve link. The projection keeps each
incident's timeline and folds it in order (`timeline_order`), so events that arrive late or out
of order (phones syncing hours later) give the same chain as events delivered in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from events.dispute import DisputeReported, MediationRecorded
from events.envelope import Event
from events.incident import (
    IncidentAccepted,
    IncidentAssigned,
    IncidentClosed,
    IncidentEscalated,
    IncidentExtended,
    IncidentOverdue,
    IncidentRejected,
    IncidentReopened,
    IncidentReportedV2,
    IncidentResolved,
    IncidentResumed,
    IncidentReturned,
    IncidentReworkRequested,
    IncidentSuspended,
    IncidentTransferred,
    IncidentVerified,
    Level,
)
from events.patrol import PatrolLogged
from events.upcasting import upcast

LINKS = ("inspect", "report", "own", "resolve", "supervise")
OPEN = ("reported", "assigned", "owned", "resolved", "verified", "suspended")
RUNNING = ("reported", "assigned", "owned")  # stages the SLA clock runs in: not yet resolved


@dataclass(frozen=True)
class Link:
    actor_id: str
    role: str
    at: datetime


@dataclass(frozen=True)
class Chain:
    incident_id: str
    kind: str | None = None  # incident | dispute
    category: str = "other"
    grid: str | None = None
    title: str | None = None
    stage: str = "unknown"  # found, reported, assigned, owned, resolved, verified, closed,
    #                         rejected, suspended
    links: dict[str, Link] = field(default_factory=dict)
    assignee: tuple[str, str] | None = None
    owner: tuple[str, str] | None = None
    level: Level = Level.grid
    deadline: datetime | None = None
    overdue_for: datetime | None = None  # the deadline an incident.overdue was emitted for
    overdue_count: int = 0
    escalations: tuple[tuple[str, str, datetime, str], ...] = ()
    suspended: tuple[str, datetime] | None = None  # (stage before, since)
    paused: timedelta = timedelta(0)
    reopen_count: int = 0
    rework_count: int = 0
    extension_count: int = 0
    return_count: int = 0
    mediations: tuple[str, ...] = ()
    satisfaction: int | None = None
    closed_at: datetime | None = None
    last_seq: int = -1

    def link(self, name: str, event: Event[Any], at: datetime | None = None) -> Chain:
        links = {**self.links, name: Link(event.actor.id, event.actor.role.value,
                                          at or event.occurred_at)}
        return replace(self, links=links)

    def unlink(self, *names: str) -> Chain:
        return replace(self, links={k: v for k, v in self.links.items() if k not in names})

    @property
    def is_open(self) -> bool:
        return self.stage in OPEN

    @property
    def overdue(self) -> bool:
        return self.deadline is not None and self.overdue_for == self.deadline and self.is_open

    @property
    def complete(self) -> bool:
        """Closed, with all five links named."""
        return self.stage == "closed" and all(name in self.links for name in LINKS)

    def seconds_between(self, first: str, then: str) -> float | None:
        if first in self.links and then in self.links:
            return (self.links[then].at - self.links[first].at).total_seconds()
        return None


def replace(chain: Chain, **changes: Any) -> Chain:
    """`dataclasses.replace` without running `__init__` again: a fold calls this a few times
    per event, and the dataclass's own took a fifth of a rebuild's time (BENCHMARKS.md)."""
    changed = object.__new__(Chain)
    changed.__dict__.update(chain.__dict__, **changes)
    return changed


def evolve(chain: Chain, event: Event[Any]) -> Chain:
    """The chain after one more event; a step the stage does not allow changes nothing."""
    event = upcast(event)  # events built in memory (tests, fixtures) skip the catalog's upcast
    chain = replace(chain, last_seq=max(chain.last_seq, event.aggregate_seq)) \
        if event.aggregate_id == chain.incident_id else chain
    stage, actor = chain.stage, (event.actor.id, event.actor.role.value)
    match event.payload:
        case PatrolLogged(ended_at=ended_at):
            found = chain.link("inspect", event, ended_at)  # patrol evidence wins over a claim
            return replace(found, stage="found") if stage == "unknown" else found
        case IncidentReportedV2() | DisputeReported() if "report" not in chain.links:
            payload = event.payload
            if isinstance(payload, DisputeReported):
                kind, category, title = "dispute", "dispute", payload.summary[:200]
            else:
                kind, category, title = "incident", payload.category.value, payload.title
            reported = replace(
                chain.link("report", event), kind=kind, grid=event.grid, category=category,
                title=title, stage="reported" if stage in ("unknown", "found") else stage,
            )
            if payload.patrol_id and "inspect" not in chain.links:
                reported = reported.link("inspect", event)
            return reported
        case IncidentRejected() if stage in ("found", "reported"):
            return replace(chain, stage="rejected")
        case IncidentAssigned(assignee=person, deadline=deadline, level=level) \
                if stage in ("reported", "assigned"):
            return replace(chain, stage="assigned", assignee=(person.id, person.role.value),
                           deadline=deadline, level=level)
        case IncidentAccepted(deadline=deadline) if stage in ("reported", "assigned") \
                and chain.owner is None:
            return replace(chain.link("own", event), stage="owned", owner=actor,
                           deadline=deadline)
        case IncidentTransferred(assignee=person) if stage in ("assigned", "owned"):
            return replace(chain.unlink("own"), stage="assigned", owner=None,
                           assignee=(person.id, person.role.value))
        case IncidentReturned() if stage in ("assigned", "owned"):
            return replace(chain.unlink("own"), stage="reported", owner=None, assignee=None,
                           deadline=None, return_count=chain.return_count + 1)
        case IncidentEscalated(from_level=old, to_level=new, reason=reason) if chain.is_open:
            return replace(chain, level=new,
                           escalations=(*chain.escalations,
                                        (old.value, new.value, event.occurred_at, reason)))
        case IncidentExtended(deadline=deadline) if chain.is_open:
            return replace(chain, deadline=deadline, extension_count=chain.extension_count + 1)
        case IncidentSuspended() if chain.is_open and stage != "suspended":
            return replace(chain, stage="suspended", suspended=(stage, event.occurred_at))
        case IncidentResumed() if chain.suspended is not None:
            before, since = chain.suspended
            pause = max(timedelta(0), event.occurred_at - since)  # clocks on phones drift
            return replace(chain, stage=before, suspended=None, paused=chain.paused + pause,
                           deadline=chain.deadline + pause if chain.deadline else None)
        case IncidentResolved() if stage == "owned" and chain.owner == actor:
            return replace(chain.link("resolve", event), stage="resolved")
        case MediationRecorded(outcome=outcome) if stage == "owned" and chain.owner == actor:
            mediated = replace(chain, mediations=(*chain.mediations, outcome))
            return replace(mediated.link("resolve", event), stage="resolved") \
                if outcome == "succeeded" else mediated
        case IncidentVerified(verdict="accepted", satisfaction=satisfaction) \
                if stage == "resolved" and chain.links["resolve"].actor_id != event.actor.id:
            return replace(chain.link("supervise", event), stage="verified",
                           satisfaction=satisfaction)
        case IncidentReworkRequested() if stage == "resolved":
            return replace(chain.unlink("resolve"), stage="owned",
                           rework_count=chain.rework_count + 1)
        case IncidentClosed() if stage == "verified":
            return replace(chain, stage="closed", closed_at=event.occurred_at)
        case IncidentReopened(deadline=deadline) if stage == "closed":
            return replace(chain.unlink("resolve", "supervise"), stage="owned", closed_at=None,
                           deadline=deadline,
                           reopen_count=chain.reopen_count + 1, satisfaction=None)
        case IncidentOverdue(deadline=deadline) if chain.overdue_for != deadline:
            return replace(chain, overdue_for=deadline, overdue_count=chain.overdue_count + 1)
    return chain


def timeline_order(incident_id: str, event: Event[Any]) -> tuple[int, datetime, str]:
    """The order a timeline folds in: the incident's own sequence, patrol findings first."""
    seq = event.aggregate_seq if event.aggregate_id == incident_id else -1
    return seq, event.occurred_at, str(event.event_id)


def in_order(incident_id: str, events: Iterable[Event[Any]]) -> list[Event[Any]]:
    """A timeline as it folds: one copy of each event id, in `timeline_order`."""
    unique = {event.event_id: event for event in events}
    return sorted(unique.values(), key=lambda e: timeline_order(incident_id, e))


def fold(incident_id: str, events: Iterable[Event[Any]]) -> Chain:
    chain = Chain(incident_id)
    for event in in_order(incident_id, events):
        chain = evolve(chain, event)
    return chain


def incidents_of(event: Event[Any]) -> list[str]:
    """Which incidents' timelines an event belongs to."""
    if isinstance(event.payload, PatrolLogged):
        return sorted({f.incident_id for f in event.payload.findings if f.incident_id})
    if event.event_type.startswith(("incident.", "dispute.")):
        return [event.aggregate_id]
    return []


def row(chain: Chain) -> tuple[Any, ...]:
    """The read-model row; deterministic, so a rebuild compares equal row for row."""
    def link(name: str) -> tuple[Any, Any, Any]:
        found = chain.links.get(name)
        return (found.actor_id, found.role, found.at) if found else (None, None, None)

    return (
        chain.incident_id, chain.kind, chain.category, chain.grid, chain.title, chain.stage,
        chain.level.value, *link("inspect"), *link("report"), *link("own"), *link("resolve"),
        *link("supervise"),
        chain.assignee[0] if chain.assignee else None, chain.owner[0] if chain.owner else None,
        chain.deadline, chain.overdue, chain.overdue_count,
        orjson.dumps([list(e) for e in chain.escalations], option=orjson.OPT_NAIVE_UTC).decode(),
        chain.reopen_count, chain.rework_count, chain.extension_count, chain.return_count,
        chain.paused.total_seconds(), orjson.dumps(list(chain.mediations)).decode(),
        chain.satisfaction, chain.seconds_between("report", "own"),
        chain.seconds_between("own", "resolve"), chain.seconds_between("resolve", "supervise"),
        chain.complete, chain.closed_at, chain.last_seq,
        chain.escalations[-1][2] if chain.escalations else None,
    )


COLUMNS = (
    "incident_id, kind, category, grid, title, stage, level,"
    " inspect_by, inspect_role, inspect_at, report_by, report_role, report_at,"
    " own_by, own_role, own_at, resolve_by, resolve_role, resolve_at,"
    " supervise_by, supervise_role, supervise_at, assignee_id, owner_id, deadline, overdue,"
    " overdue_count, escalations, reopen_count, rework_count, extension_count, return_count,"
    " paused_seconds, mediations, satisfaction, report_to_own_s, own_to_resolve_s,"
    " resolve_to_supervise_s, chain_complete, closed_at, last_seq, last_escalated_at"
)
