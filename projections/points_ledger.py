"""The points ledger (积分银行): per account, claims, awards, redemptions and the balance.

Double-entry in spirit, after TigerBeetle's accounts and transfers: every award is a transfer
from the scheme (`@scheme`) to the account, every redemption one from the account to the points
bank (`@bank`); a transfer is pending, then posts or is voided, once, and is never changed
after. An award posts when its review window has run (`posts_at`); a redemption posts when the
goods are taken. What can be spent is what has posted, less what is redeemed or held:

    balance = posted awards - redeemed - reserved  (never negative)

`evolve` is pure and refuses, by changing nothing, what would break the ledger: a second award
for the same deed and rule, a redemption beyond the balance, a void after posting. The
account's clock is its latest decision time, so it never runs back. The projection keeps each
account's timeline (and each ranking's), folds touched accounts again and rewrites their rows;
the decider folds the same timeline, so both see one account.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from events.catalog import event_from_json
from events.envelope import Event
from events.log import FETCH_MAX_WAIT_MS
from events.points import (
    PointsApproved,
    PointsAwarded,
    PointsAwardVoided,
    PointsClaimed,
    PointsRankingPublished,
    PointsRedeemed,
    PointsRedemptionReserved,
    PointsRedemptionVoided,
    PointsRejected,
)
from events.topics import POINTS
from projections.points_ranking import Credit, Snapshot, Watermark, day_of, is_half, month_of
from projections.runner import Delivery
from projections.store import Cursor, below

SCHEME = "@scheme"  # the issuing side of every award
BANK = "@bank"  # where redeemed points go: the points bank (积分超市)


@dataclass(frozen=True)
class Claim:
    claim_id: UUID
    rule: str
    quantity: int
    claimant: str
    occurred_at: datetime
    grid: str
    source_id: str | None


@dataclass(frozen=True)
class Transfer:
    """One debit, one credit, one amount: pending, then posted or voided, once."""

    transfer_id: UUID  # the id of the event that opened it
    kind: str  # award | redemption
    debit: str
    credit: str
    amount: int
    seq: int
    decided_at: datetime
    grid: str
    posts_at: datetime | None = None  # an award posts when its review window has run
    posted_seq: int | None = None  # a redemption posts when the goods are taken
    voided_seq: int | None = None
    rule: str | None = None
    rule_version: int | None = None
    source_id: str | None = None
    deed_at: datetime | None = None
    item: str | None = None

    def status(self, at: datetime) -> str:
        if self.voided_seq is not None:
            return "voided"
        if self.posted_seq is not None or (self.posts_at is not None and self.posts_at <= at):
            return "posted"
        return "pending"


@dataclass(frozen=True)
class Balance:
    awarded: int  # awards not voided, posted or still in review
    in_review: int  # awards not posted yet: they cannot be spent
    redeemed: int  # posted redemptions
    reserved: int  # redemptions waiting for the goods to be taken

    @property
    def posted(self) -> int:
        return self.awarded - self.in_review

    @property
    def available(self) -> int:
        return self.posted - self.redeemed - self.reserved


@dataclass(frozen=True)
class Account:
    account_id: str
    grid: str | None = None  # an account lives where its first event put it
    joined_at: datetime | None = None
    claims: dict[UUID, Claim] = field(default_factory=dict)
    verdicts: dict[UUID, str] = field(default_factory=dict)  # claim id -> approved | rejected
    transfers: dict[UUID, Transfer] = field(default_factory=dict)
    last_seq: int = -1  # the last decided sequence number
    clock: datetime | None = None  # the latest decision time

    def now(self, at: datetime) -> datetime:
        """Decisions never run the account's clock back (two servers' stamps may cross)."""
        return at if self.clock is None or at > self.clock else self.clock

    @property
    def pending_claims(self) -> list[Claim]:
        return [c for c in self.claims.values() if c.claim_id not in self.verdicts]

    def awards(self) -> list[Transfer]:
        return [t for t in self.transfers.values()
                if t.kind == "award" and t.voided_seq is None]

    def paid(self, source_id: str, rule: str) -> Transfer | None:
        return next((t for t in self.awards() if (t.source_id, t.rule) == (source_id, rule)),
                    None)

    def used(self, rule: str, month: str) -> int:
        """Points already awarded by `rule` for deeds of `month`: what its cap has left."""
        return sum(t.amount for t in self.awards()
                   if t.rule == rule and t.deed_at and month_of(t.deed_at) == month)

    def awarded_on(self, rule: str, day: str) -> int:
        """Points awarded by `rule` on `day` (the award's own day): what its daily cap has left."""
        return sum(t.amount for t in self.awards()
                   if t.rule == rule and day_of(t.decided_at) == day)

    def balance(self, at: datetime) -> Balance:
        status = [(t, t.status(at)) for t in self.transfers.values()]
        return Balance(
            awarded=sum(t.amount for t, s in status if t.kind == "award" and s != "voided"),
            in_review=sum(t.amount for t, s in status if t.kind == "award" and s == "pending"),
            redeemed=sum(t.amount for t, s in status if t.kind == "redemption" and s == "posted"),
            reserved=sum(t.amount for t, s in status
                         if t.kind == "redemption" and s == "pending"),
        )

    def transfer(self, transfer_id: UUID, kind: str) -> Transfer | None:
        found = self.transfers.get(transfer_id)
        return found if found is not None and found.kind == kind else None


def evolve(account: Account, event: Event[Any]) -> Account:
    """The account after one more event; what would break the ledger changes nothing."""
    payload = event.payload
    account = replace(account, grid=account.grid or event.grid,
                      joined_at=min(filter(None, (account.joined_at, event.occurred_at))))
    if isinstance(payload, PointsClaimed):
        if event.event_id in account.claims:
            return account
        claim = Claim(event.event_id, payload.rule, payload.quantity, event.actor.id,
                      event.occurred_at, event.grid, payload.source_id)
        return replace(account, claims={**account.claims, event.event_id: claim})
    if not type(payload).decided:
        return account
    account = replace(account, last_seq=max(account.last_seq, event.aggregate_seq),
                      clock=account.now(event.recorded_at))
    at, seq = account.now(event.recorded_at), event.aggregate_seq

    def close(transfer: Transfer | None, *, posted: bool) -> Account:
        if transfer is None or transfer.status(at) != "pending":
            return account
        closed = replace(transfer, posted_seq=seq) if posted else \
            replace(transfer, voided_seq=seq)
        return replace(account, transfers={**account.transfers, transfer.transfer_id: closed})

    match payload:
        case PointsApproved(claim_id=claim_id) | PointsRejected(claim_id=claim_id) \
                if claim_id not in account.verdicts:
            verdict = "approved" if isinstance(payload, PointsApproved) else "rejected"
            return replace(account, verdicts={**account.verdicts, claim_id: verdict})
        case PointsAwarded() if not account.paid(payload.source_id, payload.rule):
            return _open(account, Transfer(
                event.event_id, "award", SCHEME, account.account_id, payload.points, seq, at,
                event.grid, posts_at=payload.posts_at, rule=payload.rule,
                rule_version=payload.rule_version, source_id=payload.source_id,
                deed_at=payload.deed_at))
        case PointsRedemptionReserved(points=points, item=item) \
                if account.balance(at).available >= points:
            return _open(account, Transfer(event.event_id, "redemption", account.account_id,
                                           BANK, points, seq, at, event.grid, item=item))
        case PointsAwardVoided(award_id=award_id):
            return close(account.transfer(award_id, "award"), posted=False)
        case PointsRedeemed(redemption_id=redemption_id):
            return close(account.transfer(redemption_id, "redemption"), posted=True)
        case PointsRedemptionVoided(redemption_id=redemption_id):
            return close(account.transfer(redemption_id, "redemption"), posted=False)
    return account


def _open(account: Account, transfer: Transfer) -> Account:
    if transfer.transfer_id in account.transfers:
        return account
    return replace(account, transfers={**account.transfers, transfer.transfer_id: transfer})


def timeline_order(event: Event[Any]) -> tuple[int, datetime, str]:
    return event.aggregate_seq, event.occurred_at, str(event.event_id)


def fold(account_id: str, events: Iterable[Event[Any]]) -> Account:
    account = Account(account_id)
    for event in sorted(events, key=timeline_order):
        account = evolve(account, event)
    return account


# --- the read model ------------------------------------------------------------------------

ACCOUNT_COLUMNS = ("account_id, grid, joined_at, claims_pending, awarded, redeemed, reserved,"
                   " last_seq")
TRANSFER_COLUMNS = ("transfer_id, account_id, kind, debit_account, credit_account, amount,"
                    " status, grid, rule, rule_version, source_id, item, deed_at, month,"
                    " posts_at, seq, resolved_seq, decided_at")


def account_row(account: Account) -> tuple[Any, ...]:
    # time-independent figures only: whether an award has posted is asked with a time
    resolved = [(t, t.voided_seq is None) for t in account.transfers.values()]
    return (account.account_id, account.grid, account.joined_at, len(account.pending_claims),
            sum(t.amount for t, live in resolved if t.kind == "award" and live),
            sum(t.amount for t, _ in resolved if t.posted_seq is not None),
            sum(t.amount for t, live in resolved
                if t.kind == "redemption" and live and t.posted_seq is None),
            account.last_seq)


def transfer_rows(account: Account) -> list[tuple[Any, ...]]:
    def status(t: Transfer) -> str:
        # an award's row stays 'open' until voided: it posts by itself at posts_at
        return "voided" if t.voided_seq is not None else \
            "posted" if t.posted_seq is not None else "open"

    return [(t.transfer_id, account.account_id, t.kind, t.debit, t.credit, t.amount, status(t),
             t.grid, t.rule, t.rule_version, t.source_id, t.item, t.deed_at,
             month_of(t.deed_at) if t.deed_at else None, t.posts_at, t.seq,
             t.voided_seq if t.voided_seq is not None else t.posted_seq, t.decided_at)
            for t in sorted(account.transfers.values(), key=lambda t: t.seq)]


def is_account(aggregate_id: str) -> bool:
    return ":" not in aggregate_id  # rankings are 'ranking:<period>:<compound>'


class PointsLedger:
    name = "points_ledger"
    topics: tuple[str, ...] = (POINTS.name,)
    as_written = False
    fetch_wait_ms = FETCH_MAX_WAIT_MS
    tables = {  # every column is a function of the log: a rebuild reproduces them all
        "points_timeline": "aggregate_id, event_id, body",
        "points_accounts": ACCOUNT_COLUMNS,
        "points_transfers": TRANSFER_COLUMNS,
        "points_rankings": "compound, period, event_id, ranks, progress, watermark, tie_break,"
                           " published_at, published_by",
    }

    async def settle(self, cur: Cursor) -> None:
        """A rebuild's batches hold nothing back: each batch moves the balances it touches."""

    async def write(self, cur: Cursor, deliveries: Sequence[Delivery]) -> None:
        """Add the batch to the timelines; refold every touched account and ranking."""
        # as `matters` keeps its timelines: the record's own bytes (a read upcasts them), and
        # the arrays in binary, where psycopg's text form runs a regex per element
        await cur.execute(
            "insert into points_timeline (aggregate_id, event_id, body)"
            " select * from unnest(%b::text[], %b::uuid[], %b::bytea[])"
            " on conflict do nothing returning aggregate_id",
            [[d.event.aggregate_id for d in deliveries], [d.event.event_id for d in deliveries],
             [d.record.value for d in deliveries]])
        touched = sorted({a for (a,) in await cur.fetchall()})  # a redelivery adds nothing
        if not touched:
            return
        timelines = await timelines_of(cur, touched)
        accounts = [fold(a, timelines[a]) for a in touched if is_account(a)]
        if accounts:
            ids = [a.account_id for a in accounts]
            await cur.execute("delete from points_accounts where account_id = any(%s)", [ids])
            await cur.execute("delete from points_transfers where account_id = any(%s)", [ids])
            async with cur.copy(f"copy points_accounts ({ACCOUNT_COLUMNS}) from stdin") as copy:
                for account in accounts:
                    await copy.write_row(account_row(account))
            async with cur.copy(f"copy points_transfers ({TRANSFER_COLUMNS}) from stdin") as copy:
                for account in accounts:
                    for transfer in transfer_rows(account):
                        await copy.write_row(transfer)
        for aggregate_id in touched:
            published = sorted((e for e in timelines[aggregate_id]
                                if isinstance(e.payload, PointsRankingPublished)),
                               key=timeline_order)
            if published:  # the first publication is the one: it is a frozen fact
                await _record_ranking(cur, published[0])


async def _record_ranking(cur: Cursor, event: Event[Any]) -> None:
    ranking = event.payload
    assert isinstance(ranking, PointsRankingPublished)  # noqa: S101 - filtered by the caller
    await cur.execute(
        "insert into points_rankings (compound, period, event_id, ranks, progress, watermark,"
        " tie_break, published_at, published_by) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " on conflict (compound, period) do nothing",
        [ranking.compound, ranking.period, event.event_id,
         orjson.dumps([r.model_dump() for r in ranking.ranks]).decode(),
         orjson.dumps(ranking.progress.model_dump() if ranking.progress else None).decode(),
         orjson.dumps(ranking.watermark).decode(), ranking.tie_break, event.occurred_at,
         event.actor.id])


# --- readers: the decider's and the query API's view ----------------------------------------

async def timelines_of(cur: Cursor, aggregate_ids: list[str]) -> dict[str, list[Event[Any]]]:
    await cur.execute("select aggregate_id, body from points_timeline"
                      " where aggregate_id = any(%s)", [aggregate_ids])
    timelines: dict[str, list[Event[Any]]] = {a: [] for a in aggregate_ids}
    for aggregate_id, body in await cur.fetchall():
        timelines[aggregate_id].append(event_from_json(bytes(body)))
    for events in timelines.values():
        events.sort(key=timeline_order)
    return timelines


async def account_of(cur: Cursor, account_id: str) -> tuple[Account, list[Event[Any]]]:
    """The account as the projection folds it now, and the events behind it, in order."""
    events = (await timelines_of(cur, [account_id]))[account_id]
    return fold(account_id, events), events


async def credits_under(cur: Cursor, place: str) -> tuple[list[Credit], dict[str, int]]:
    """Awards not voided at or below `place`, and each awarded account's last decided seq.

    One statement, so the credits and the watermark are one snapshot.
    """
    await cur.execute(
        "select t.account_id, t.amount, t.deed_at, t.seq, a.last_seq"
        " from points_transfers t join points_accounts a using (account_id)"
        " where t.kind = 'award' and t.status <> 'voided' and (t.grid = %s or t.grid like %s)",
        below(place))
    rows = await cur.fetchall()
    return ([Credit(a, points, deed_at, seq) for a, points, deed_at, seq, _ in rows],
            {a: last for a, *_, last in rows})


async def published_rankings(cur: Cursor, compound: str) -> dict[str, dict[str, Any]]:
    """The compound's published rankings by period: ranks, progress, watermark, tie-break."""
    await cur.execute(
        "select period, event_id, ranks, progress, watermark, tie_break, published_at,"
        " published_by from points_rankings where compound = %s", [compound])
    return {period: {"event_id": str(event_id), "ranks": ranks, "progress": progress,
                     "watermark": watermark, "tie_break": tie_break,
                     "published_at": published_at, "published_by": by}
            for period, event_id, ranks, progress, watermark, tie_break, published_at, by
            in await cur.fetchall()}


def watermarks(published: dict[str, dict[str, Any]], *, half: bool) -> dict[str, Watermark]:
    return {period: p["watermark"] for period, p in published.items() if ("H" in period) == half}


async def joined_under(cur: Cursor, place: str) -> dict[str, datetime]:
    await cur.execute("select account_id, joined_at from points_accounts"
                      " where grid = %s or grid like %s", below(place))
    return dict(await cur.fetchall())


async def ranking_snapshot(cur: Cursor, compound: str, period: str) -> Snapshot:
    """What publishing `period` for `compound` reads, in one repeatable-read snapshot."""
    async with cur.connection.transaction():
        await cur.execute("set transaction isolation level repeatable read")
        credits, last_seq = await credits_under(cur, compound)
        published = await published_rankings(cur, compound)
    return Snapshot(credits, last_seq, watermarks(published, half=is_half(period)),
                    already=period in published)
