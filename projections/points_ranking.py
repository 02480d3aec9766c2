"""Rankings of a compound: a month's top three, a half year's winner and progress award.

Pure. An award counts in the period its deed was done in (months and halves of the
Asia/Shanghai calendar), unless that period's ranking was already published without it: a
published ranking is a frozen fact, and what arrives after it counts in the next period not yet
published. "Without it" is read from the publication's watermark (per account, the last decided
sequence number it counted), so a replay, in any delivery order, counts every award in the same
period as the live ledger did.

Tie-break (documented in every publication): more points first; then whoever reached the total
first, i.e. the earlier last deed counted; then the account id, ascending.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from events.points import Progress, Rank
from projections.sla import LOCAL

TIE_BREAK = "more points first; then the earlier last deed (who reached the total first);" \
    " then the account id, ascending"
PROGRESS_TIE_BREAK = "the largest improvement over the previous half; then more points this" \
    " half; then the earlier last deed; then the account id, ascending"
TOP = 3

Watermark = Mapping[str, int]  # account id -> last decided sequence number counted


@dataclass(frozen=True)
class Credit:
    """An award as a ranking counts it (voided awards are not credits)."""

    account_id: str
    points: int
    deed_at: datetime
    seq: int  # the award's place in its account's decided sequence


# --- periods: '2026-05' (a month), '2026H1' (a half year) -----------------------------------

def month_of(at: datetime) -> str:
    local = at.astimezone(LOCAL)
    return f"{local.year:04d}-{local.month:02d}"


def day_of(at: datetime) -> str:
    return at.astimezone(LOCAL).date().isoformat()


def half_of(month: str) -> str:
    return f"{month[:4]}H{1 if int(month[5:7]) <= 6 else 2}"


def is_half(period: str) -> bool:
    return "H" in period


def following(period: str) -> str:
    year = int(period[:4])
    if is_half(period):
        return f"{year}H2" if period.endswith("1") else f"{year + 1}H1"
    month = int(period[5:7])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def preceding(period: str) -> str:
    year = int(period[:4])
    if is_half(period):
        return f"{year - 1}H2" if period.endswith("1") else f"{year}H1"
    month = int(period[5:7])
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def starts(period: str) -> datetime:
    """Midnight, local time, on the period's first day."""
    month = (1 if period.endswith("1") else 7) if is_half(period) else int(period[5:7])
    return datetime(int(period[:4]), month, 1, tzinfo=LOCAL)


def ends(period: str) -> datetime:
    return starts(following(period))


def months_of(half: str) -> list[str]:
    first = starts(half).month
    return [f"{half[:4]}-{m:02d}" for m in range(first, first + 6)]


def period_of(at: datetime, *, half: bool) -> str:
    month = month_of(at)
    return half_of(month) if half else month


# --- counting ----------------------------------------------------------------------------

def counted_in(credit: Credit, published: Mapping[str, Watermark], *, half: bool) -> str:
    """The period a credit counts in: its deed's, or the first published later without it."""
    period = period_of(credit.deed_at, half=half)
    while period in published:
        if credit.seq <= published[period].get(credit.account_id, -1):
            return period  # the publication counted it: frozen there
        period = following(period)
    return period


def totals(credits: Iterable[Credit], published: Mapping[str, Watermark],
           period: str) -> dict[str, tuple[int, datetime]]:
    """Per account: points counted in `period`, and the last deed counted."""
    found: dict[str, tuple[int, datetime]] = {}
    for credit in credits:
        if counted_in(credit, published, half=is_half(period)) == period:
            points, last = found.get(credit.account_id, (0, credit.deed_at))
            found[credit.account_id] = (points + credit.points, max(last, credit.deed_at))
    return found


def standings(credits: Iterable[Credit], published: Mapping[str, Watermark],
              period: str) -> list[Rank]:
    """Every account with points in the period, in ranking order (see TIE_BREAK)."""
    ordered = sorted(totals(credits, published, period).items(),
                     key=lambda item: (-item[1][0], item[1][1], item[0]))
    return [Rank(rank=i + 1, account_id=account, points=points)
            for i, (account, (points, _)) in enumerate(ordered)]


def progress(credits: Iterable[Credit], published: Mapping[str, Watermark],
             half: str) -> Progress | None:
    """The largest improvement over the previous half (see PROGRESS_TIE_BREAK), if any."""
    credits = list(credits)
    now = totals(credits, published, half)
    before = totals(credits, published, preceding(half))
    previous = {account: points for account, (points, _) in before.items()}
    gains = [(points - previous.get(account, 0), points, last, account)
             for account, (points, last) in now.items()]
    gains = [g for g in gains if g[0] > 0]
    if not gains:
        return None
    _, points, _, account = min(gains, key=lambda g: (-g[0], -g[1], g[2], g[3]))
    return Progress(account_id=account, previous=previous.get(account, 0), current=points)


@dataclass(frozen=True)
class Participation:
    """参与率: households with points from deeds of the month, of households in the scheme."""

    month: str
    households: int
    with_points: int

    @property
    def share(self) -> Fraction | None:
        return Fraction(self.with_points, self.households) if self.households else None


def participation(joined: Mapping[str, datetime], credits: Iterable[Credit],
                  month: str) -> Participation:
    """`joined`: each account's first event; it counts as a household from then on."""
    earning = {c.account_id for c in credits if month_of(c.deed_at) == month}
    households = {a for a, at in joined.items() if at < ends(month)} | earning
    return Participation(month, len(households), len(earning))


@dataclass(frozen=True)
class Snapshot:
    """What a publication reads from the ledger, in one snapshot, for one compound."""

    credits: Sequence[Credit]
    last_seq: Mapping[str, int]  # every awarded account's last decided sequence number
    published: Mapping[str, Watermark]  # the compound's publications of the same kind
    already: bool  # this very period is published
