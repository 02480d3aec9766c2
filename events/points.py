"""Points events (积分制): deeds claimed and validated, awards, redemptions, published rankings.

Points are never deducted (积分不扣分): every quantity is a positive integer, and points leave
an account only through a redemption at the points bank. The ledger is double-entry in spirit
(TigerBeetle's accounts and transfers): an award is a transfer from the scheme to the account,
a redemption one from the account to the points bank; each is pending first (an award during
its review window, a redemption until the goods are taken) and then posts or is voided, once.

A claim is a fact a household (or its grid worker) publishes: "household self-reports,
committee validates" (住户自评自述、公示认定). Everything else is decided by the points decider
as the outcome of a command (`decided=True`), on the topic keyed by account id.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events.envelope import Grid, Payload, Role
from events.incident import Text

#: a household's or resident's account; no ':' so it can never be taken for a ranking's id
AccountId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.-]+$")]
RuleCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")]
SourceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.:@-]+$")]
Quantity = Annotated[int, Field(gt=0, le=100_000)]  # units of a rule: hours, times, ideas
Points = Annotated[int, Field(gt=0, le=1_000_000)]
Item = Annotated[str, Field(min_length=1, max_length=200)]
Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]  # 2026-05
Half = Annotated[str, Field(pattern=r"^\d{4}H[12]$")]  # 2026H1
Period = Annotated[str, Field(pattern=r"^\d{4}(-(0[1-9]|1[0-2])|H[12])$")]

#: who may publish a household's self-report: the household, or its grid worker on its behalf
CLAIMANTS = frozenset({Role.resident, Role.worker, Role.grid_chief})


class PointsClaimed(Payload, type="points.claimed", emitted_by=CLAIMANTS):
    """住户自评自述: a household reports a deed of its own, for the grid work group to validate."""

    rule: RuleCode
    quantity: Quantity
    evidence: Text
    photos: Annotated[list[Annotated[str, Field(max_length=300)]], Field(max_length=20)] = []
    source_id: SourceId | None = None  # the deed's own id (an activity, an event), if it has one


class PointsApproved(Payload, type="points.approved", decided=True):
    """公示认定: the claim holds, for this many units (at most the claimed ones)."""

    claim_id: UUID
    quantity: Quantity
    note: Text | None = None


class PointsRejected(Payload, type="points.rejected", decided=True):
    claim_id: UUID
    reason: Text


class PointsAwarded(Payload, type="points.awarded", decided=True):
    """A transfer from the scheme to the account, priced by a rule of the catalog's version.

    It is pending during the rule's review window and posts at `posts_at`; only then can the
    points be spent, and from then on nothing can take them back.
    """

    rule: RuleCode
    rule_version: Annotated[int, Field(ge=1)]
    quantity: Quantity
    points: Points
    source_id: SourceId  # with `rule`, what makes the deed: paid once per account
    deed_at: AwareDatetime  # when the deed was done: the month it counts in
    posts_at: AwareDatetime
    claim_id: UUID | None = None  # the claim it validates; none for a direct award
    note: Text | None = None


class PointsAwardVoided(Payload, type="points.award_voided", decided=True):
    """A wrongly approved award cancelled inside its review window, before it posted."""

    award_id: UUID
    reason: Text


class PointsRedemptionReserved(Payload, type="points.redemption_reserved", decided=True):
    """积分兑换, pending: the points are held for goods or a service until they are taken."""

    item: Item
    points: Points


class PointsRedeemed(Payload, type="points.redeemed", decided=True):
    """The goods or service were taken at the points bank: the reservation posts."""

    redemption_id: UUID
    item: Item
    points: Points


class PointsRedemptionVoided(Payload, type="points.redemption_voided", decided=True):
    """A cancelled pickup: the held points return to the account, once."""

    redemption_id: UUID
    reason: Text


class Rank(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    rank: Annotated[int, Field(ge=1)]
    account_id: AccountId
    points: Annotated[int, Field(ge=0)]


class Progress(BaseModel):
    """进步奖: the largest improvement over the previous half year."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    account_id: AccountId
    previous: Annotated[int, Field(ge=0)]
    current: Annotated[int, Field(ge=0)]


class PointsRankingPublished(Payload, type="points.ranking_published", decided=True):
    """公示: a compound's ranking for a month (top three) or a half year (winner, progress).

    A frozen fact: `watermark` names, per account, the last decided sequence number the
    ranking counted; anything the account was decided after it counts in the next period.
    """

    compound: Grid
    period: Period
    ranks: Annotated[list[Rank], Field(max_length=50)]
    progress: Progress | None = None
    watermark: Annotated[dict[AccountId, Annotated[int, Field(ge=0)]], Field(max_length=20_000)]
    tie_break: Text


_CLAIM = "0b5c2a5e-6a0e-4f8b-9a53-5f8f1b2c9d01"
PointsClaimed.example = {"rule": "environment_work", "quantity": 2,
                         "evidence": "清扫 3 号楼前公共区域并分类垃圾两次", "photos": [],
                         "source_id": None}
PointsApproved.example = {"claim_id": _CLAIM, "quantity": 2, "note": "网格员现场核实"}
PointsRejected.example = {"claim_id": _CLAIM, "reason": "同一事项已申报"}
PointsAwarded.example = {
    "rule": "environment_work", "rule_version": 1, "quantity": 2, "points": 4,
    "source_id": _CLAIM, "deed_at": "2026-11-18T09:00:00+08:00",
    "posts_at": "2026-11-27T09:12:00+08:00", "claim_id": _CLAIM, "note": None}
PointsAwardVoided.example = {"award_id": _CLAIM, "reason": "公示期内群众反映不实"}
PointsRedemptionReserved.example = {"item": "洗衣液 1 瓶", "points": 20}
PointsRedeemed.example = {"redemption_id": _CLAIM, "item": "洗衣液 1 瓶", "points": 20}
PointsRedemptionVoided.example = {"redemption_id": _CLAIM, "reason": "未到积分超市领取"}
PointsRankingPublished.example = {
    "compound": "430382/101/003/07", "period": "2026-10",
    "ranks": [{"rank": 1, "account_id": "hh-0007", "points": 42},
              {"rank": 2, "account_id": "hh-0003", "points": 30},
              {"rank": 3, "account_id": "hh-0012", "points": 30}],
    "progress": None, "watermark": {"hh-0003": 4, "hh-0007": 9, "hh-0012": 2},
    "tie_break": "points, then the earlier last deed, then the account id"}


def ranking_id(compound: str, period: str) -> str:
    """The aggregate a ranking is published under: one per compound and period."""
    return f"ranking:{period}:{compound.replace('/', '.')}"
