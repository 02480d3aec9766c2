"""Commands: requests for a decision with invariants, carried to the single-writer decider."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from events.envelope import Actor, Grid
from events.incident import Level, Person, Text
from events.points import AccountId, Item, Period, Points, Quantity, RuleCode, SourceId, ranking_id


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

    @property
    def aggregate_id(self) -> str:
        return self.incident_id

    @property
    def kind(self) -> str:
        return self.command.type


# --- points (积分制): decisions on an account's ledger, and the publication of rankings ---------


class Award(_Step):
    """A direct award by an authorised role (a mediator's reported dispute, logged hours)."""

    type: Literal["award"]
    rule: RuleCode
    quantity: Quantity
    source_id: SourceId  # the deed: the event or activity it is paid for
    note: Text | None = None


class Approve(_Step):
    type: Literal["approve"]
    claim_id: UUID
    quantity: Quantity | None = None  # what the committee validated; defaults to the claim's
    note: Text | None = None


class RejectClaim(_Step):
    type: Literal["reject_claim"]
    claim_id: UUID
    reason: Text


class VoidAward(_Step):
    type: Literal["void_award"]
    award_id: UUID
    reason: Text


class Redeem(_Step):
    type: Literal["redeem"]
    item: Item
    points: Points


class PostRedemption(_Step):
    type: Literal["post_redemption"]
    redemption_id: UUID


class VoidRedemption(_Step):
    type: Literal["void_redemption"]
    redemption_id: UUID
    reason: Text


class PublishRanking(_Step):
    """公示 a compound's ranking: a month's top three, or a half year's winner and progress."""

    type: Literal["publish_ranking"]
    period: Period


PointsStep = Annotated[
    Award | Approve | RejectClaim | VoidAward | Redeem | PostRedemption | VoidRedemption
    | PublishRanking,
    Field(discriminator="type"),
]


class PointsCommandRequest(BaseModel):
    """A points command: on an account (at its place), or a ranking of a compound (`grid`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    command_id: UUID
    account_id: AccountId | None = None
    grid: Grid
    occurred_at: AwareDatetime
    command: PointsStep

    @model_validator(mode="after")
    def _names_its_aggregate(self) -> PointsCommandRequest:
        publishing = isinstance(self.command, PublishRanking)
        if publishing == (self.account_id is not None):
            raise ValueError("account_id is required, except to publish a ranking")
        if len(self.aggregate_id) > 64:
            raise ValueError("the compound's place is too long to name a ranking")
        return self

    @property
    def aggregate_id(self) -> str:
        if isinstance(self.command, PublishRanking):
            return ranking_id(self.grid, self.command.period)
        return str(self.account_id)

    @property
    def kind(self) -> str:
        return self.command.type


class IssuedPointsCommand(PointsCommandRequest):
    actor: Actor
    recorded_at: AwareDatetime
