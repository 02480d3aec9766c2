"""Valid incident lifecycles built by the real decider, for streams the tests publish directly."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from events.commands import (
    Accept,
    Assign,
    Escalate,
    IssuedCommand,
    Mediate,
    Reopen,
    Resolve,
    Verify,
)
from events.dispute import DisputeKind, DisputeReported, Party
from events.envelope import Actor, Event, Role
from events.incident import Category, IncidentReported, Location, Person
from projections.five_have import Chain, evolve
from projections.incident_decider import decide, envelopes, for_command
from projections.sla import Rules


def report(grid: str, rng: random.Random, start: datetime) -> Event[IncidentReported]:
    """A worker's report of a broken street lamp: the first event of every lifecycle."""
    worker = Actor(id=f"w-{rng.randrange(100):03d}", role=Role.worker)
    return Event[IncidentReported](
        event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        event_type="incident.reported", schema_version=1, occurred_at=start,
        recorded_at=start, actor=worker, grid=grid, aggregate_seq=0,
        aggregate_id=f"inc-{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}",
        payload=IncidentReported(category=rng.choice(list(Category)), title="路灯损坏",
                                 description="文化广场东侧路灯不亮，夜间行人不便。",
                                 location=Location(description="文化广场东侧")))


def lifecycle(rules: Rules, grid: str, rng: random.Random, start: datetime) -> list[Event[Any]]:
    """One incident from report to close: some escalated, some reworked, some reopened."""
    reported = report(grid, rng, start)
    worker = reported.actor
    chief = Actor(id=f"gc-{rng.randrange(10):02d}", role=Role.grid_chief)
    supervisor = Actor(id=f"sv-{rng.randrange(5):02d}", role=Role.supervisor)
    steps: list[tuple[Actor, Any]] = [
        (chief, Assign(type="assign", assignee=Person(id=worker.id, role=worker.role))),
        (worker, Accept(type="accept"))]
    if rng.random() < 0.15:
        steps.append((chief, Escalate(type="escalate", reason="需社区协调")))
    steps.append((worker, Resolve(type="resolve", measures="更换灯泡", outcome="已修复")))
    if rng.random() < 0.2:
        steps += [(supervisor, Verify(type="verify", verdict="rejected", note="仍不亮")),
                  (worker, Resolve(type="resolve", measures="更换线路", outcome="已修复"))]
    steps.append((supervisor, Verify(type="verify", verdict="accepted",
                                     satisfaction=rng.randint(1, 5))))
    if rng.random() < 0.1:
        steps += [(supervisor, Reopen(type="reopen", reason="又坏了")),
                  (worker, Resolve(type="resolve", measures="再修", outcome="已修复")),
                  (supervisor, Verify(type="verify", verdict="accepted"))]
    events = played(rules, reported, steps, rng)
    assert events[-1].event_type == "incident.closed"  # every generated lifecycle ends closed
    return events


def dispute(rules: Rules, grid: str, rng: random.Random, start: datetime,
            outcome: str) -> list[Event[Any]]:
    """A dispute a village mediator found and mediated on the spot, with this outcome."""
    mediator = Actor(id=f"m-{rng.randrange(50):03d}", role=Role.mediator)
    reported = Event[DisputeReported](
        event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        event_type="dispute.reported", schema_version=1, occurred_at=start, recorded_at=start,
        actor=mediator, grid=grid, aggregate_seq=0,
        aggregate_id=f"dsp-{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}",
        payload=DisputeReported(kind=rng.choice(list(DisputeKind)),
                                parties=[Party(name="张建国"), Party(name="李秀英")],
                                summary="两户因宅基地边界发生争执。",
                                location=Location(description="马场村 3 组")))
    return played(rules, reported, [(mediator, Mediate(type="mediate", outcome=outcome))], rng)


def played(rules: Rules, reported: Event[Any], steps: list[tuple[Actor, Any]],
           rng: random.Random) -> list[Event[Any]]:
    """The report, then each step as the decider decides it."""
    chain, events, at = evolve(Chain(reported.aggregate_id), reported), [reported], \
        reported.occurred_at
    for actor, step in steps:
        at += timedelta(minutes=rng.randint(5, 600))
        issued = IssuedCommand(command_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                               incident_id=reported.aggregate_id, occurred_at=at,
                               command=step, actor=actor, recorded_at=at)
        for event in envelopes(chain, for_command(issued, decide(issued, chain, rules)),
                               actor=actor, recorded_at=at, correlation_id=issued.command_id):
            chain = evolve(chain, event)
            events.append(event)
    return events
