"""One points account moved on by claims and commands exactly as the decider and ledger do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from events.commands import IssuedPointsCommand
from events.envelope import Actor, Event, Role
from events.points import PointsClaimed
from projections.incident_decider import Rejected
from projections.points_decider import decide, envelopes
from projections.points_ledger import Account, evolve
from projections.points_rules import Catalog, load

SHANGHAI = ZoneInfo("Asia/Shanghai")
CATALOG = load()
GRID = "430382/101/003/07"
chief = Actor(id="gc-zhaomin", role=Role.grid_chief)
worker = Actor(id="w-lina", role=Role.worker)
police = Actor(id="p-wang", role=Role.police)
supervisor = Actor(id="sv-chenjing", role=Role.supervisor)


@dataclass
class Book:
    """An account's events, as the log would hold them, and the account they fold to."""

    account_id: str = field(default_factory=lambda: f"hh-{uuid.uuid4().hex[:8]}")
    grid: str = GRID
    catalog: Catalog = CATALOG
    events: list[Event[Any]] = field(default_factory=list)
    account: Account = field(init=False)

    def __post_init__(self) -> None:
        self.account = Account(self.account_id)

    @property
    def resident(self) -> Actor:
        return Actor(id=self.account_id, role=Role.resident)

    def claim(self, rule: str, quantity: int, at: datetime, *, source_id: str | None = None,
              by: Actor | None = None, seq: int = 0) -> uuid.UUID:
        """The household's self-report, a fact it publishes with its own sequence number."""
        payload = PointsClaimed(rule=rule, quantity=quantity, evidence="清扫楼道并分类垃圾",
                                source_id=source_id)
        event = Event[PointsClaimed](
            event_id=uuid.uuid4(), event_type=payload.event_type, schema_version=1,
            occurred_at=at, recorded_at=at, actor=by or self.resident, grid=self.grid,
            aggregate_id=self.account_id, aggregate_seq=seq, payload=payload)
        self.apply([event])
        return event.event_id

    def command(self, actor: Actor, step: dict[str, Any], at: datetime, *,
                command_id: uuid.UUID | None = None,
                grid: str | None = None) -> IssuedPointsCommand:
        return IssuedPointsCommand.model_validate({
            "command_id": command_id or uuid.uuid4(), "account_id": self.account_id,
            "grid": grid or self.grid, "occurred_at": at, "recorded_at": at, "actor": actor,
            "command": step})

    def does(self, actor: Actor, step: dict[str, Any], at: datetime,
             **options: Any) -> list[Event[Any]]:
        command = self.command(actor, step, at, **options)
        decided = decide(command, self.account, self.catalog)
        return self.apply(envelopes(command, decided, after_seq=self.account.last_seq))

    def refuses(self, actor: Actor, step: dict[str, Any], at: datetime, **options: Any
                ) -> Rejected:
        with pytest.raises(Rejected) as refused:
            decide(self.command(actor, step, at, **options), self.account, self.catalog)
        return refused.value

    def apply(self, events: list[Event[Any]]) -> list[Event[Any]]:
        for event in events:
            self.account = evolve(self.account, event)
        self.events.extend(events)
        return events


def award(rule: str, quantity: int, source_id: str | None = None) -> dict[str, Any]:
    return {"type": "award", "rule": rule, "quantity": quantity,
            "source_id": source_id or f"deed-{uuid.uuid4().hex[:8]}"}


def redeem(points: int, item: str = "洗衣液 1 瓶") -> dict[str, Any]:
    return {"type": "redeem", "item": item, "points": points}
