"""Commands: requests for a decision with invariants, carried to the single-writer decider."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events.envelope import Actor
from events.incident import Level, Person, Text


class _Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Assign(_Step):
    type: Literal["assign"]
    assignee: Person
    level: Level | None = None  # defaults to the incident's current level
    deadline: AwareDatetime | None = None  # an approver's explicit deadline; else the SLA's


class Accept(_Step):
    type: Literal["accept"]


class Resolve(_Step):
    type: Literal["resolve"]
    measures: Text
    outcome: Text


class Mediate(_Step):
    type: Literal["mediate"]
    outcome: Literal["succeeded", "failed", "continuing"]
    agreement: Text | None = None


class Verify(_Step):
    type: Literal["verify"]
    verdict: Literal["accepted", "rejected"]
    satisfaction: Annotated[int, Field(ge=1, le=5)] | None = None
    note: Text | None = None


class Reopen(_Step):
    type: Literal["reopen"]
    reason: Text


class Escalate(_Step):
    type: Literal["escalate"]
    reason: Text
    to_level: Level | None = None  # defaults to the next rung of the ladder


class Transfer(_Step):
    type: Literal["transfer"]
    assignee: Person
    reason: Text


class Reject(_Step):
    type: Literal["reject"]
    reason: Literal["duplicate", "invalid", "not_ours"]
    duplicate_of: Annotated[str, Field(max_length=64)] | None = None
    note: Text | None = None


class Return(_Step):
    type: Literal["return"]
    reason: Text


class Extend(_Step):
    type: Literal["extend"]
    deadline: AwareDatetime
    reason: Text


class Suspend(_Step):
    type: Literal["suspend"]
    reason: Text


class Resume(_Step):
    type: Literal["resume"]


Step = Annotated[
    Assign | Accept | Resolve | Mediate | Verify | Reopen | Escalate | Transfer | Reject
    | Return | Extend | Suspend | Resume,
    Field(discriminator="type"),
]


class CommandRequest(BaseModel):
    """What a client sends: the command id is its idempotency key."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    command_id: UUID
    incident_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.:-]+$")]
    occurred_at: AwareDatetime
    command: Step


class IssuedCommand(CommandRequest):
    """On the commands topic: the request stamped with its issuer and the server's time."""

    actor: Actor
    recorded_at: AwareDatetime
