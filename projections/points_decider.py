"""The points decider: `decide(command, account, catalog) -> events`, and `publish(...)`.

Pure: the account (folded by the ledger) comes in, payloads or a `Rejected` go out. Invariants:
a claim is approved or rejected once; a deed is paid once per account and rule (the award names
its source); a rule's monthly cap (by the deed's month) and daily cap (by the award's day, on
the server's clock) hold; a redemption never exceeds the balance (the reason says what the
balance is); an award can be voided only inside its review window, before it posts; points are
never deducted. Event ids derive from the command id, so a retried command
cannot emit twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from events.commands import (
    Approve,
    Award,
    IssuedPointsCommand,
    PostRedemption,
    PublishRanking,
    Redeem,
    RejectClaim,
    VoidAward,
    VoidRedemption,
)
from events.envelope import Actor, Event, Payload, Role
from events.points import (
    PointsApproved,
    PointsAwarded,
    PointsAwardVoided,
    PointsRankingPublished,
    PointsRedeemed,
    PointsRedemptionReserved,
    PointsRedemptionVoided,
    PointsRejected,
)
from projections.incident_decider import Rejected
from projections.points_ledger import Account, Claim, Transfer
from projections.points_ranking import (
    PROGRESS_TIE_BREAK,
    TIE_BREAK,
    TOP,
    Snapshot,
    day_of,
    ends,
    is_half,
    month_of,
    progress,
    standings,
)
from projections.points_rules import Catalog, Rule

EVENT_IDS = uuid.UUID("3c0b7a52-9d1e-4f0a-8f6e-2b5d7c9e1a44")  # namespace for derived ids

GRID_WORK_GROUP = frozenset({Role.grid_chief, Role.worker, Role.police})  # 网格工作小组
COUNTER = frozenset({Role.grid_chief, Role.worker})  # who keeps the points bank's counter
PUBLISHERS = frozenset({Role.grid_chief, Role.supervisor})
_PAYERS = GRID_WORK_GROUP | {Role.mediator, Role.supervisor}
#: who may ask for each command at all; the rule's own roles narrow award, approve and void
COMMAND_ROLES: dict[str, frozenset[Role]] = {
    "award": _PAYERS,
    "approve": _PAYERS,
    "reject_claim": _PAYERS,
    "void_award": _PAYERS,
    "redeem": COUNTER | {Role.resident},  # a resident, from their own account
    "post_redemption": COUNTER,
    "void_redemption": COUNTER | {Role.resident},
    "publish_ranking": PUBLISHERS,
}


def decide(command: IssuedPointsCommand, account: Account, catalog: Catalog) -> list[Payload]:
    step, actor = command.command, command.actor
    if actor.role not in COMMAND_ROLES[step.type]:
        raise Rejected("forbidden_role", f"role {actor.role} may not {step.type}")
    if account.grid is not None and account.grid != command.grid:
        raise Rejected("wrong_place", f"account {account.account_id} is in {account.grid}")
    now = account.now(command.recorded_at)
    match step:
        case Award(rule=code, quantity=quantity, source_id=source_id, note=note):
            rule = _rule(catalog, code)
            _may(actor, rule.award, f"award {code}")
            _not_own(actor, account)
            return [_award(account, catalog, rule, quantity, source_id, command.occurred_at,
                           now, None, note)]
        case Approve(claim_id=claim_id, quantity=quantity, note=note):
            claim = _pending(account, claim_id)
            rule = _rule(catalog, claim.rule)
            if not rule.claimable:
                raise Rejected("not_claimable", f"{rule.code} is awarded, not claimed")
            _may(actor, rule.approve, f"approve {rule.code}")
            _not_own(actor, account, claim)
            quantity = quantity or claim.quantity
            if quantity > claim.quantity:
                raise Rejected("invalid_quantity",
                               f"the claim is for {claim.quantity}; cannot approve {quantity}")
            return [PointsApproved(claim_id=claim_id, quantity=quantity, note=note),
                    _award(account, catalog, rule, quantity, claim.source_id or str(claim_id),
                           claim.occurred_at, now, claim_id, note)]
        case RejectClaim(claim_id=claim_id, reason=reason):
            claim = _pending(account, claim_id)
            _may(actor, _reviewers(catalog, claim.rule), "reject this claim")
            _not_own(actor, account, claim)
            return [PointsRejected(claim_id=claim_id, reason=reason)]
        case VoidAward(award_id=award_id, reason=reason):
            award = account.transfer(award_id, "award")
            if award is None:
                raise Rejected("not_found", f"no award {award_id} on this account")
            _may(actor, _reviewers(catalog, award.rule or "") | {Role.supervisor},
                 "void this award")
            status = award.status(now)
            if status == "posted":
                raise Rejected("posted", f"the award posted at {award.posts_at}: points are"
                               " never deducted once posted")
            if status == "voided":
                raise Rejected("voided", "the award is already voided")
            return [PointsAwardVoided(award_id=award_id, reason=reason)]
        case Redeem(item=item, points=points):
            _own_or_counter(actor, account)
            available = account.balance(now).available
            if points > available:
                raise Rejected("insufficient_points",
                               f"the balance is {available} points; {points} asked")
            return [PointsRedemptionReserved(item=item, points=points)]
        case PostRedemption(redemption_id=redemption_id):
            held = _held(account, redemption_id)
            return [PointsRedeemed(redemption_id=redemption_id, item=held.item or "",
                                   points=held.amount)]
        case VoidRedemption(redemption_id=redemption_id, reason=reason):
            _own_or_counter(actor, account)
            _held(account, redemption_id)
            return [PointsRedemptionVoided(redemption_id=redemption_id, reason=reason)]
    raise Rejected("unknown_command", step.type)  # publish_ranking is decided by publish()


def _rule(catalog: Catalog, code: str) -> Rule:
    rule = catalog.get(code)
    if rule is None:
        raise Rejected("unknown_rule", f"no rule {code} in catalog version {catalog.version}")
    return rule


def _reviewers(catalog: Catalog, code: str) -> frozenset[Role]:
    """Who may refuse a claim or void an award: whoever may pay the rule; for a rule the
    catalog no longer has, the grid work group."""
    rule = catalog.get(code)
    return rule.approve | rule.award if rule else GRID_WORK_GROUP


def _may(actor: Actor, roles: frozenset[Role], what: str) -> None:
    if actor.role not in roles:
        raise Rejected("forbidden_role", f"role {actor.role} may not {what}")


def _not_own(actor: Actor, account: Account, claim: Claim | None = None) -> None:
    if actor.id == account.account_id or (claim is not None and actor.id == claim.claimant):
        raise Rejected("self_approval", "nobody validates or pays their own deeds")


def _own_or_counter(actor: Actor, account: Account) -> None:
    if actor.role == Role.resident and actor.id != account.account_id:
        raise Rejected("forbidden_role", "a resident acts only on their own account")


def _pending(account: Account, claim_id: uuid.UUID) -> Claim:
    claim = account.claims.get(claim_id)
    if claim is None:
        raise Rejected("not_found", f"no claim {claim_id} on this account")
    if claim_id in account.verdicts:
        raise Rejected("already_decided", f"the claim was {account.verdicts[claim_id]} already")
    return claim


def _held(account: Account, redemption_id: uuid.UUID) -> Transfer:
    held = account.transfer(redemption_id, "redemption")
    if held is None:
        raise Rejected("not_found", f"no redemption {redemption_id} on this account")
    if held.posted_seq is not None or held.voided_seq is not None:
        raise Rejected("not_pending", "the redemption was "
                       f"{'taken' if held.posted_seq is not None else 'voided'} already")
    return held


def _award(account: Account, catalog: Catalog, rule: Rule, quantity: int, source_id: str,
           deed_at: datetime, now: datetime, claim_id: uuid.UUID | None,
           note: str | None) -> PointsAwarded:
    paid = account.paid(source_id, rule.code)
    if paid is not None:
        raise Rejected("already_paid", f"{source_id} was paid under {rule.code} by award"
                       f" {paid.transfer_id}")
    points = quantity * rule.points_per_unit
    month = month_of(deed_at)
    used = account.used(rule.code, month)
    if used + points > rule.monthly_cap:
        raise Rejected("monthly_cap", f"{rule.code} pays at most {rule.monthly_cap} a month;"
                       f" {used} already awarded for {month}, {points} more asked")
    day = day_of(now)
    today = account.awarded_on(rule.code, day)
    if today + points > rule.daily_cap:
        raise Rejected("daily_cap", f"{rule.code} pays an account at most {rule.daily_cap} a"
                       f" day; {today} already awarded on {day}, {points} more asked")
    return PointsAwarded(rule=rule.code, rule_version=catalog.version, quantity=quantity,
                         points=points, source_id=source_id, deed_at=deed_at,
                         posts_at=now + rule.review, claim_id=claim_id, note=note)


def publish(command: IssuedPointsCommand, snapshot: Snapshot) -> list[Payload]:
    """公示: the period's ranking as a frozen fact, once the period is over."""
    step = command.command
    assert isinstance(step, PublishRanking)  # noqa: S101 - routed here by its type
    if command.actor.role not in COMMAND_ROLES[step.type]:
        raise Rejected("forbidden_role", f"role {command.actor.role} may not publish")
    if snapshot.already:
        raise Rejected("already_published", f"{step.period} is published for {command.grid}")
    if command.recorded_at < ends(step.period):
        raise Rejected("period_open", f"{step.period} runs until {ends(step.period).isoformat()}")
    half = is_half(step.period)
    return [PointsRankingPublished(
        compound=command.grid, period=step.period,
        ranks=standings(snapshot.credits, snapshot.published, step.period)[:TOP],
        progress=progress(snapshot.credits, snapshot.published, step.period) if half else None,
        watermark=dict(snapshot.last_seq),
        tie_break=f"{TIE_BREAK}. Progress: {PROGRESS_TIE_BREAK}" if half else TIE_BREAK)]


def envelopes(command: IssuedPointsCommand, payloads: Sequence[Payload], *,
              after_seq: int) -> list[Event[Any]]:
    """Wrap decided payloads; their ids derive from the command's, so a retry emits the same."""
    wrapped = []
    for i, payload in enumerate(payloads):
        key = f"{command.aggregate_id}/command/{command.command_id}/{i}"
        wrapped.append(Event[type(payload)](  # type: ignore[misc,operator]
            event_id=uuid.uuid5(EVENT_IDS, key), event_type=payload.event_type,
            schema_version=payload.schema_version, occurred_at=command.occurred_at,
            recorded_at=command.recorded_at, actor=command.actor, grid=command.grid,
            aggregate_id=command.aggregate_id, aggregate_seq=after_seq + 1 + i,
            correlation_id=command.command_id, payload=payload))
    return wrapped
