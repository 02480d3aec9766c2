"""The ledger's invariants, for any sequence of claims, approvals, awards and redemptions.

At every prefix of the log: balance = awarded (posted) - redeemed - reserved >= 0, total debits
equal total credits, a duplicated source pays once, the caps (monthly by the deed's month, daily
by the award's day) hold, and the fold equals a
straightforward recount of the events.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events.envelope import Actor, Event, Payload, Role
from events.points import (
    PointsApproved,
    PointsAwarded,
    PointsAwardVoided,
    PointsRedeemed,
    PointsRedemptionReserved,
    PointsRedemptionVoided,
    PointsRejected,
)
from projections.incident_decider import Rejected
from projections.points_ledger import BANK, SCHEME, Account, fold
from projections.points_ranking import day_of, month_of
from tests.points import CATALOG, GRID, SHANGHAI, Book, award, chief, police, redeem, worker

START = datetime(2026, 10, 20, 9, 0, tzinfo=SHANGHAI)  # months and review windows roll over
RULES = ["environment_work", "volunteer_hour", "volunteer_hour", "golden_idea", "dispute_report"]
SOURCES = ["deed-a", "deed-b", "deed-c"]  # few, so the same deed comes up again

Op = tuple[Any, ...]
spending = st.one_of(  # drawn as often as all the rest: most logs should spend, a lot
    st.tuples(st.just("redeem"), st.integers(1, 12)),
    st.tuples(st.just("take"), st.integers(0, 20)),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
)
ops = st.lists(st.one_of(spending, spending, spending,
    st.tuples(st.just("claim"), st.sampled_from(["environment_work", "golden_idea"]),
              st.integers(1, 6), st.sampled_from([*SOURCES, None])),
    st.tuples(st.just("approve"), st.integers(0, 20), st.integers(0, 3)),
    st.tuples(st.just("reject"), st.integers(0, 20)),
    st.tuples(st.just("award"), st.sampled_from(RULES), st.integers(1, 12),
              st.sampled_from(SOURCES)),
    st.tuples(st.just("void"), st.integers(0, 20)),
    st.tuples(st.just("wait"), st.integers(1, 200)),
), min_size=8, max_size=50)


def play(script: list[Op]) -> tuple[Book, datetime]:
    """Run the script through the decider; a refused command changes nothing, as live."""
    book, now = Book(), START
    claims: list[uuid.UUID] = []
    for op in script:
        step: dict[str, Any] | None = None
        actor = chief
        match op:
            case ("claim", rule, quantity, source):
                claims.append(book.claim(rule, quantity, now, source_id=source,
                                         seq=len(book.events)))
            case ("approve", i, less) if claims:
                claim = book.account.claims[claims[i % len(claims)]]
                step = {"type": "approve", "claim_id": str(claim.claim_id),
                        "quantity": max(1, claim.quantity - less)}
            case ("reject", i) if claims:
                step = {"type": "reject_claim", "claim_id": str(claims[i % len(claims)]),
                        "reason": "不实"}
            case ("award", rule, quantity, source):
                step = award(rule, quantity, source)
            case ("redeem", points):
                step, actor = redeem(points), worker
            case ("take" | "cancel" | "void" as kind, i):
                wanted = "award" if kind == "void" else "redemption"
                opened = [t for t in book.account.transfers.values() if t.kind == wanted]
                if opened:
                    target = str(sorted(opened, key=lambda t: t.seq)[i % len(opened)].transfer_id)
                    step = {"take": {"type": "post_redemption", "redemption_id": target},
                            "cancel": {"type": "void_redemption", "redemption_id": target,
                                       "reason": "未领取"},
                            "void": {"type": "void_award", "award_id": target,
                                     "reason": "公示期内反映不实"}}[kind]
            case ("wait", hours):
                now += timedelta(hours=hours)
        if step is not None:
            try:
                book.does(police if step["type"] == "approve" else actor, step, now)
            except Rejected:
                pass
    return book, now


def recount(events: list[Event[Any]], at: datetime) -> int:
    """The balance the plain way: add up what the events say, no ledger involved."""
    awards: dict[uuid.UUID, tuple[int, datetime]] = {}
    voided, released = set(), set()
    held: dict[uuid.UUID, int] = {}
    taken: dict[uuid.UUID, int] = {}
    for event in sorted(events, key=lambda e: e.aggregate_seq if e.payload.decided else -1):
        match event.payload:
            case PointsAwarded(points=points, posts_at=posts_at):
                awards[event.event_id] = (points, posts_at)
            case PointsAwardVoided(award_id=award_id):
                voided.add(award_id)
            case PointsRedemptionReserved(points=points):
                held[event.event_id] = points
            case PointsRedeemed(redemption_id=redemption_id, points=points):
                taken[redemption_id] = points
            case PointsRedemptionVoided(redemption_id=redemption_id):
                released.add(redemption_id)
    posted = sum(p for i, (p, posts_at) in awards.items() if i not in voided and posts_at <= at)
    reserved = sum(p for i, p in held.items() if i not in taken and i not in released)
    return posted - sum(taken.values()) - reserved


def clock_of(events: list[Event[Any]]) -> datetime:
    return max((e.recorded_at for e in events if e.payload.decided), default=START)


def check(account: Account, events: list[Event[Any]]) -> None:
    at = clock_of(events)
    balance = account.balance(at)
    assert balance.available >= 0
    assert balance.available == balance.posted - balance.redeemed - balance.reserved
    assert balance.available == recount(events, at)
    # double entry: every transfer debits one account and credits another by its amount
    net: dict[str, int] = defaultdict(int)
    for transfer in account.transfers.values():
        if transfer.status(at) != "voided":
            net[transfer.debit] -= transfer.amount
            net[transfer.credit] += transfer.amount
    assert sum(net.values()) == 0
    assert net[SCHEME] == -balance.awarded
    assert net[BANK] == balance.redeemed + balance.reserved
    assert net[account.account_id] == balance.awarded - balance.redeemed - balance.reserved
    paid = Counter((t.source_id, t.rule) for t in account.awards())
    assert all(n == 1 for n in paid.values()), paid  # a deed pays once
    used: dict[tuple[str, str], int] = defaultdict(int)
    for t in account.awards():
        used[t.rule or "", month_of(t.deed_at or at)] += t.amount
    assert all(n <= CATALOG.rules[rule].monthly_cap for (rule, _), n in used.items())
    awarded_at = {e.event_id: e.recorded_at for e in events if isinstance(e.payload, PointsAwarded)}
    daily: dict[tuple[str, str], int] = defaultdict(int)
    for t in account.awards():
        daily[t.rule or "", day_of(awarded_at[t.transfer_id])] += t.amount
    assert all(n <= CATALOG.rules[rule].daily_cap for (rule, _), n in daily.items())
    verdicts = Counter(e.payload.claim_id for e in events
                       if isinstance(e.payload, PointsApproved | PointsRejected))
    assert all(n == 1 for n in verdicts.values())  # a claim is decided once


@settings(max_examples=200, deadline=None)
@given(ops)
def test_the_ledger_holds_at_every_prefix_of_any_log_the_decider_writes(script: list[Op]) -> None:
    book, _ = play(script)
    for end in range(len(book.events) + 1):
        prefix = book.events[:end]
        check(fold(book.account_id, prefix), prefix)
    assert fold(book.account_id, book.events) == book.account  # the decider's view is the fold


@settings(max_examples=100, deadline=None)
@given(ops, st.randoms(use_true_random=False))
def test_any_delivery_order_folds_the_same_account(script: list[Op], rng: random.Random) -> None:
    book, _ = play(script)
    shuffled = list(book.events)
    rng.shuffle(shuffled)
    assert fold(book.account_id, shuffled) == book.account


def forged(account_id: str, seq: int, at: datetime, payload: Payload) -> Event[Any]:
    return Event[type(payload)](  # type: ignore[misc,operator]
        event_id=uuid.uuid4(), event_type=payload.event_type, schema_version=1,
        occurred_at=at, recorded_at=at, actor=Actor(id="gc-1", role=Role.grid_chief),
        grid=GRID, aggregate_id=account_id, aggregate_seq=seq, payload=payload)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["award", "reserve", "take", "cancel", "void"]),
                          st.integers(1, 30), st.integers(0, 10), st.integers(0, 9)),
                max_size=30))
def test_no_log_can_overdraw_an_account_or_pay_a_deed_twice(
    raw: list[tuple[str, int, int, int]],
) -> None:
    """Not only what the decider writes: events forged onto the log change nothing unlawful."""
    events: list[Event[Any]] = []
    for seq, (kind, points, days, pick) in enumerate(raw):
        at = START + timedelta(days=days)
        earlier = [e.event_id for e in events]
        target = earlier[pick % len(earlier)] if earlier else uuid.uuid4()
        payload: Payload
        match kind:
            case "award":
                payload = PointsAwarded(
                    rule="environment_work", rule_version=1, quantity=1, points=points,
                    source_id=SOURCES[pick % 3], deed_at=at,
                    posts_at=at + timedelta(days=pick))
            case "reserve":
                payload = PointsRedemptionReserved(item="米 5 斤", points=points)
            case "take":
                payload = PointsRedeemed(redemption_id=target, item="米", points=points)
            case "cancel":
                payload = PointsRedemptionVoided(redemption_id=target, reason="取消")
            case _:
                payload = PointsAwardVoided(award_id=target, reason="不实")
        events.append(forged("hh-forged", seq, at, payload))
    for end in range(len(events) + 1):
        account = fold("hh-forged", events[:end])
        at = account.clock or START
        assert account.balance(at).available >= 0
        assert all(n == 1 for n in Counter((t.source_id, t.rule)
                                           for t in account.awards()).values())


def test_a_duplicated_source_event_pays_once_even_delivered_twice() -> None:
    book = Book()
    (paid,) = book.does(chief, award("volunteer_hour", 3, "activity-7"), START)
    twice = fold(book.account_id, [paid, paid])
    assert twice.balance(START).available == 6
    copy = forged(book.account_id, 5, START, paid.payload)  # the same deed under a new id
    assert fold(book.account_id, [paid, copy]).balance(START).available == 6
