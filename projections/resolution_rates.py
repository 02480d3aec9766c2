"""Resolution rates: the facts behind every published figure, rolled up per place and day.

Each matter's facts are derived from its whole timeline, folded with the five-have chain's own
`evolve`, so a step counts only if it took effect, and a late or out-of-order event yields the
same facts as in-order delivery. An event counts on the day it occurred (device time, on the
Asia/Shanghai calendar); figures due by a deadline count on the deadline's day. The facts
are kept per matter with the event behind each (for "explain this number"), and their counts
are rolled up per place at every level of the hierarchy and per day, so any period is a sum.
The formulas are stated once, in `RATES`, and explained in docs/METRICS.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from events.dispute import MediationRecorded
from events.envelope import Event
from events.incident import (
    IncidentEscalated,
    IncidentExtended,
    IncidentOverdue,
    IncidentReworkRequested,
    IncidentSuspended,
    Level,
)
from events.patrol import PatrolLogged
from projections.five_have import Chain, evolve, in_order
from projections.rebuilding import is_rebuilding
from projections.sla import LOCAL
from projections.store import Cursor

#: everything a matter or a patrol can count as; rates are ratios of two of these
MEASURES = frozenset({
    "reported", "disputes_found", "owned", "resolved", "matters_resolved", "resolved_on_time",
    "disputes_resolved", "mediated_ok", "verified", "rated", "satisfied", "closed",
    "closed_complete", "closed_by_reporter", "reopened", "reopened_soon", "rework",
    "repeated_rework", "overdue", "escalated", "escalated_beyond_town", "extended", "suspended",
    "due", "due_closed", "due_closed_on_time", "due_closed_clean", "due_closed_on_time_clean",
    "patrolled", "grid_days_patrolled"})
REOPEN_SOON = timedelta(days=7)  # a close reopened within this is flagged (gaming guard)
#: roles allowed to hold each link, for chain completeness
LINK_ROLES = {
    "inspect": {"worker", "grid_chief", "police", "mediator"},
    "report": {"worker", "grid_chief", "police", "mediator"},
    "own": {"worker", "grid_chief", "police", "mediator"},
    "resolve": {"worker", "grid_chief", "police", "mediator"},
    "supervise": {"grid_chief", "supervisor"},
}


@dataclass(frozen=True, order=True)
class Fact:
    """One counted thing: what, on which day, where, for which matter, because of which event."""

    measure: str
    day: date
    grid: str
    incident_id: str
    event_id: UUID | None = None
    value: float | None = None  # a duration in seconds, or a satisfaction score


def local_day(at: datetime) -> date:
    return at.astimezone(LOCAL).date()


def _complete(chain: Chain) -> bool:
    """All five links named, by distinct people in roles allowed to hold them."""
    links = [chain.links.get(name) for name in LINK_ROLES]
    if any(link is None for link in links) or not chain.complete:
        return False
    holders = {(link.actor_id) for link in links if link}
    roles_ok = all(link.role in LINK_ROLES[name]  # type: ignore[union-attr]
                   for name, link in zip(LINK_ROLES, links, strict=True))
    # inspect and report, and own and resolve, may be the same person; supervise may not
    supervisor = chain.links["supervise"].actor_id
    return roles_ok and supervisor != chain.links["resolve"].actor_id and len(holders) >= 2


def matter(incident_id: str, events: Iterable[Event[Any]]) -> tuple[Chain, list[Fact]]:
    """A matter's chain and every fact it contributes, from one fold of its timeline in any
    order of arrival (the projection writes both, so it folds once)."""
    chain, found = Chain(incident_id), []
    for event in in_order(incident_id, events):
        before, chain = chain, evolve(chain, event)
        # the fields compared as dicts, in C: a field by field `==` cost more than the step
        took_effect = vars(before) != {**vars(chain), "last_seq": before.last_seq}
        if not took_effect or chain.grid is None or isinstance(event.payload, PatrolLogged):
            continue

        def fact(measure: str, value: float | None = None, *, e: Event[Any] = event,
                 grid: str = chain.grid) -> Fact:
            return Fact(measure, local_day(e.occurred_at), grid, incident_id, e.event_id, value)

        found += _step_facts(before, chain, event, fact)
    if chain.grid is not None:
        found += _matter_facts(chain, suspect=any(f.measure in SUSPECT for f in found))
    return chain, sorted(found, key=_fact_order)


def _fact_order(f: Fact) -> tuple[Any, ...]:
    """`Fact`'s own order, as one tuple: sorting by it skips a comparison method per pair."""
    return (f.measure, f.day, f.grid, f.incident_id, f.event_id, f.value)


def facts(incident_id: str, events: Iterable[Event[Any]]) -> list[Fact]:
    """Every fact a matter contributes, from its timeline in any order of arrival."""
    return matter(incident_id, events)[1]


def _step_facts(before: Chain, after: Chain, event: Event[Any], fact: Any) -> list[Fact]:
    """The facts one effective step adds."""
    out: list[Fact] = []
    dispute = after.kind == "dispute" or after.category == "dispute"
    if "report" in after.links and "report" not in before.links:
        out.append(fact("reported"))
        if dispute:
            out.append(fact("disputes_found"))
    if after.owner is not None and before.owner != after.owner and "own" in after.links:
        out.append(fact("owned", after.seconds_between("report", "own")))
    if after.stage == "resolved" and before.stage != "resolved":
        out.append(fact("resolved", after.seconds_between("own", "resolve")))
        if after.deadline is None or event.occurred_at <= after.deadline:
            out.append(fact("resolved_on_time"))
        # only a rework or a reopening takes a resolve link away, and each is counted: a
        # matter is resolved once for 处置率 and 化解率, which count matters, not resolutions
        if before.rework_count == 0 and before.reopen_count == 0:
            out.append(fact("matters_resolved"))
            if dispute:
                out.append(fact("disputes_resolved"))
    if isinstance(event.payload, MediationRecorded) and event.payload.outcome == "succeeded":
        out.append(fact("mediated_ok"))
    if after.stage == "verified" and before.stage != "verified":
        out.append(fact("verified", after.seconds_between("resolve", "supervise")))
        if after.satisfaction is not None:
            out.append(fact("rated", float(after.satisfaction)))
            if after.satisfaction >= 4:
                out.append(fact("satisfied"))
    if after.stage == "closed" and before.stage != "closed":
        out.append(fact("closed"))
        if _complete(after):
            out.append(fact("closed_complete"))
        if after.links["supervise"].actor_id == after.links["report"].actor_id:
            out.append(fact("closed_by_reporter"))
    if after.reopen_count > before.reopen_count:
        out.append(fact("reopened"))
        if before.closed_at is not None and event.occurred_at - before.closed_at <= REOPEN_SOON:
            out.append(fact("reopened_soon"))
    match event.payload:
        case IncidentReworkRequested():
            out.append(fact("rework"))
            if after.rework_count == 2:
                out.append(fact("repeated_rework"))
        case IncidentOverdue():
            out.append(fact("overdue"))
        case IncidentEscalated(to_level=to_level):
            out.append(fact("escalated"))
            if to_level == Level.county:  # 矛盾不上交: beyond the village and the town
                out.append(fact("escalated_beyond_town"))
        case IncidentExtended():
            out.append(fact("extended"))
        case IncidentSuspended():
            out.append(fact("suspended"))
    return out


def _matter_facts(chain: Chain, *, suspect: bool) -> list[Fact]:
    """Facts of the matter as it stands: what was due by its deadline, and whether it closed.

    A suspended (挂账) or rejected matter is not due: deferred cases leave the denominator. An
    extended (延期) one is due on its new deadline. A closure counts again as `..._clean` when
    the matter has no suspect fact (the gaming guards' adjusted rates are then plain counts).
    """
    if chain.deadline is None or chain.stage in ("suspended", "rejected") or chain.grid is None:
        return []
    day = local_day(chain.deadline)
    closed = chain.stage == "closed" and chain.closed_at is not None
    on_time = closed and chain.closed_at is not None and chain.closed_at <= chain.deadline
    measures = ["due", *(["due_closed"] if closed else []),
                *(["due_closed_on_time"] if on_time else [])]
    if not suspect:
        measures += [f"{m}_clean" for m in measures if m != "due"]
    return [Fact(m, day, chain.grid, chain.incident_id) for m in measures]


def patrol_facts(event: Event[PatrolLogged]) -> list[Fact]:
    """A patrol counts for its grid on the day it ended."""
    return [Fact("patrolled", local_day(event.payload.ended_at), event.grid or "",
                 event.aggregate_id, event.event_id)]


def places_of(grid: str) -> list[str]:
    """The grid and every place above it: county, town, community, grid (and building)."""
    parts = grid.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


Move = tuple[str, date, str, int, int | None]  # (grid, day, measure, n, micros)


def in_micros(value: float) -> int:
    """A fact's value as the rollup sums it: whole microseconds, rounded once from the
    float's exact digits, so sums that go up and down again come back to what a rebuild from
    offset 0 computes."""
    return int(f"{value:.6f}".replace(".", ""))


def moves(new: Iterable[Fact], old: Iterable[Fact]) -> list[Move]:
    """How facts counted (`new`) and taken back (`old`) move each (grid, day, measure): the
    count, and the values in whole microseconds (None where no fact had a value). Only the
    grid: the database adds each move to every place above it (a tenth of a batch's time
    went to doing that here and sending four times the rows)."""
    counts: dict[tuple[str, date, str], int] = {}
    micros: dict[tuple[str, date, str], int] = {}
    for sign, facts_ in ((1, new), (-1, old)):
        for f in facts_:
            key = (f.grid, f.day, f.measure)
            counts[key] = counts.get(key, 0) + sign
            if f.value is not None:
                micros[key] = micros.get(key, 0) + sign * in_micros(f.value)
    # a move of nothing without values changes no row; one with values still types its
    # places' sums as exact to the microsecond
    return [(*key, n, micros.get(key)) for key, n in counts.items() if n or key in micros]


FACT_COLUMNS = "measure, day, grid, incident_id, event_id, value"


TakenBack = Callable[[], Awaitable[tuple[list[Fact], list[Fact]]]]


async def take_back(cur: Cursor, matters: Sequence[str],
                    patrols: Sequence[Event[PatrolLogged]]) -> TakenBack:
    """Take the touched matters' facts out, each matter's whole set to be written again, and
    count the patrols not counted before. Returns how to read the answers, (the facts taken
    out, the patrols' new facts): in a pipeline, once it has ended, so that every statement
    shares one round trip with those sent around it."""
    conn = cur.connection
    taken, counted = conn.cursor(), conn.cursor()
    if matters:
        await taken.execute(
            "delete from rate_facts where incident_id = any(%b)"
            " returning measure, day, grid, incident_id, event_id, value", [list(matters)])
    walked = [f for p in patrols for f in patrol_facts(p)]
    if walked:
        await counted.execute(
            "insert into rate_facts (measure, day, grid, incident_id, event_id)"
            " select * from unnest(%b::text[], %b::date[], %b::text[], %b::text[], %b::uuid[])"
            " on conflict do nothing returning event_id",
            list(map(list, zip(*[(f.measure, f.day, f.grid, f.incident_id, f.event_id)
                                 for f in walked], strict=True))))
    await _moves_tables(cur)

    async def answers() -> tuple[list[Fact], list[Fact]]:
        old = [Fact(*row) for row in await taken.fetchall()] if matters else []
        fresh = {row[0] for row in await counted.fetchall()} if walked else set()
        return old, [f for f in walked if f.event_id in fresh]
    return answers


async def _moves_tables(cur: Cursor) -> None:
    """Where `record` COPYs a batch's moves, and `roll_up` spreads them over the places."""
    await cur.execute(
        "create temporary table if not exists grid_moves (grid text, day date,"
        " measure text, n bigint, micros bigint) on commit delete rows")
    await cur.execute(
        "create temporary table if not exists rate_moves (place text, depth int, day date,"
        " measure text, n bigint, total numeric) on commit delete rows")


async def record(cur: Cursor, new: Sequence[Fact], old: Sequence[Fact],
                 patrolled: Sequence[Fact]) -> bool:
    """Write the touched matters' facts again (`new`, after `take_back`) and COPY how they
    and the patrols' new facts move each grid, day and measure; whether anything moved, for
    `roll_up` to add to the places above. A rebuild holds the moves back instead, with its
    batch's offsets, for `roll_up_held` to add up at its end: nothing for `roll_up` now."""
    if new:  # binary, as the archive: no text for the days, ids and values
        async with cur.copy(f"copy rate_facts ({FACT_COLUMNS}) from stdin (format binary)"
                            ) as copy:
            copy.set_types(["text", "date", "text", "text", "uuid", "float8"])
            for f in new:
                await copy.write_row((f.measure, f.day, f.grid, f.incident_id, f.event_id,
                                      f.value))
    moved = moves([*new, *patrolled], old)
    held = is_rebuilding()
    if moved:
        # COPY, then one upsert (a rebuild's at its end): a batch moves thousands of (grid,
        # day, measure) keys, and psycopg formats COPY rows in C but array parameters in Python
        async with cur.copy(f"copy {'held_moves' if held else 'grid_moves'}"
                            " (grid, day, measure, n, micros) from stdin (format binary)"
                            ) as copy:
            copy.set_types(["text", "date", "text", "int8", "int8"])
            for move in moved:
                await copy.write_row(move)
    return bool(moved) and not held


async def roll_up_held(cur: Cursor) -> None:
    """Roll up at once every move a rebuild held back, added up per grid, day and measure.

    Rolled up batch by batch, a rebuild upserted each batch's keys into the daily and monthly
    rows of every place above them: ~¾ of PostgreSQL's time, 5 upserts per event, in a
    rebuild of 30,000 events. Added up first, each key is rolled up once. The sums are the
    same (the rollup only adds), so the rows are those the live chain holds. The moves are
    taken out in the statement that adds them up, so a worker ending while another still
    holds moves back rolls up only what it took; two workers ending at once take turns (two
    deletes of one large table can scan it from different places, each waiting for a row
    the other took: a deadlock)."""
    await _moves_tables(cur)
    await cur.execute("select pg_advisory_xact_lock(hashtext(current_schema() || '.held_moves'))")
    await cur.execute(
        "with taken as (delete from held_moves returning *)"
        " insert into grid_moves select grid, day, measure, sum(n), sum(micros) from taken"
        " group by 1, 2, 3")
    if cur.rowcount:
        await roll_up(cur, patrolled=True)


async def roll_up(cur: Cursor, *, patrolled: bool) -> None:
    """Add the moves `record` COPYed to every place above their grids, by day and by month.
    An answer is read only if patrols counted (which grid-days they were first on), so in a
    pipeline a batch without them goes in one round trip."""
    # every place above a grid, as `places_of`; a sum of values is exact to the
    # microsecond (scale 6), a count without values sums to a plain 0
    await cur.execute(
        "insert into rate_moves (place, depth, day, measure, n, total)"
        " select array_to_string(parts[1:depth], '/'), depth, day, measure, sum(n),"
        " coalesce(sum(micros) * 0.000001, 0)"
        " from (select string_to_array(grid, '/') as parts, day, measure, n, micros"
        "       from grid_moves) as g,"
        " generate_series(1, greatest(cardinality(parts), 1)) as depth"
        " group by 1, 2, 3, 4 having sum(n) <> 0 or sum(micros) <> 0")
    # the grid-days whose `patrolled` row this upsert created (xmax = 0: inserted, not
    # updated); a concurrent worker's upsert of the same row waits for ours and updates
    # it, so each grid-day is first exactly once, however the patrols are spread. Rows
    # are taken in key order, so two workers' upserts lock them in the same order. The
    # moves hold one row per key until the grid-days join them.
    await cur.execute(
        "with moved as (insert into rate_daily (place, depth, day, measure, n, total)"
        "   select place, depth, day, measure, n, total from rate_moves"
        "   order by place, day, measure"
        "   on conflict (place, day, measure) do update"
        "   set n = rate_daily.n + excluded.n, total = rate_daily.total + excluded.total"
        "   returning place, depth, day, measure, xmax = 0 as created)"
        " select place, day from moved"
        " where created and measure = 'patrolled' and depth = 4")
    if patrolled:
        await _count_grid_days(cur, await cur.fetchall())
    # the same moves, grid-days included, by calendar month
    await cur.execute(
        "insert into rate_monthly (place, depth, day, measure, n, total)"
        " select place, depth, date_trunc('month', day)::date, measure, sum(n),"
        " sum(total) from rate_moves group by 1, 2, 3, 4 order by 1, 3, 4"
        " on conflict (place, day, measure) do update"
        " set n = rate_monthly.n + excluded.n, total = rate_monthly.total + excluded.total")
    # a count back to nothing leaves no row, as a rebuild from offset 0 would not have one;
    # only a move that takes facts away (n < 0) can bring one there: counts never go below
    # zero, and a row without facts sums to zero
    await cur.execute(
        "delete from rate_daily where n = 0 and total = 0 and (place, day, measure) in"
        " (select place, day, measure from rate_moves where n < 0)")
    await cur.execute(
        "delete from rate_monthly where n = 0 and total = 0 and (place, day, measure) in"
        " (select place, date_trunc('month', day)::date, measure from rate_moves"
        "  where n < 0)")
    await cur.execute(
        "insert into rate_places (place, depth) select distinct place, depth"
        " from rate_moves on conflict do nothing")


async def _count_grid_days(cur: Cursor, first_patrols: Sequence[tuple[str, date]]) -> None:
    """A grid-day's first patrol adds one to `grid_days_patrolled` at every level above the
    grid, so coverage is a sum of days like every other figure (a move like the others, so
    the monthly grain counts it too)."""
    keys = [(place, day) for grid, day in first_patrols for place in places_of(grid)]
    if keys:
        await cur.execute(
            "insert into rate_moves (place, depth, day, measure, n, total)"
            " select p, depth, d, 'grid_days_patrolled', count(*), 0"
            " from unnest(%b::text[], %b::int[], %b::date[]) as u(p, depth, d)"
            " group by p, depth, d",
            [[p for p, _ in keys], [p.count("/") + 1 for p, _ in keys], [d for _, d in keys]])
        await cur.execute(
            "insert into rate_daily (place, depth, day, measure, n, total)"
            " select place, depth, day, measure, n, total from rate_moves"
            " where measure = 'grid_days_patrolled' order by place, day"
            " on conflict (place, day, measure) do update set n = rate_daily.n + excluded.n")


@dataclass(frozen=True)
class Rate:
    """A published rate: numerator and denominator are measures counted in the period."""

    name: str
    numerator: str
    denominator: str
    zh: str
    en: str


RATES = (
    Rate("closure_rate", "due_closed", "due", "结案率", "closure rate"),
    Rate("on_time_closure_rate", "due_closed_on_time", "due", "按期结案率",
         "on-time closure rate"),
    Rate("resolution_rate", "matters_resolved", "reported", "处置率", "resolution rate"),
    Rate("resolved_on_time_rate", "resolved_on_time", "resolved", "按期处置率",
         "resolved on time"),
    Rate("rework_rate", "rework", "resolved", "返工率", "rework rate"),
    Rate("extension_rate", "extended", "owned", "延期率", "extension rate"),
    Rate("reopen_rate", "reopened", "closed", "重开率", "reopen rate"),
    Rate("mediation_success_rate", "mediated_ok", "disputes_found", "调解成功率",
         "mediation success rate"),
    Rate("dispute_resolution_rate", "disputes_resolved", "disputes_found", "矛盾纠纷化解率",
         "dispute resolution rate"),
    Rate("satisfaction_rate", "satisfied", "rated", "满意率", "satisfaction rate"),
    Rate("chain_completeness", "closed_complete", "closed", "五有链条完整率",
         "chain completeness"),
    Rate("escalated_beyond_town_share", "escalated_beyond_town", "reported", "矛盾上交率",
         "escalated beyond the town"),
)
RATE_BY_NAME = {rate.name: rate for rate in RATES}
#: closures that do not count in the adjusted rates (gaming guards)
SUSPECT = ("closed_by_reporter", "reopened_soon")
DURATIONS = {"report_to_own": "owned", "own_to_resolve": "resolved",
             "resolve_to_supervise": "verified"}


def percent(numerator: int, denominator: int) -> float | None:
    """The rate in percent, rounded half up to one decimal (644/655 -> 98.3)."""
    if denominator == 0:
        return None
    exact = Decimal(numerator * 100) / Decimal(denominator)
    return float(exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def figures(counts: Mapping[str, int], min_cases: int) -> dict[str, dict[str, Any]]:
    """Every rate from a period's counts; under `min_cases` cases a rate is shown, not ranked."""
    return {
        rate.name: {
            "numerator": counts.get(rate.numerator, 0),
            "denominator": counts.get(rate.denominator, 0),
            "percent": percent(counts.get(rate.numerator, 0), counts.get(rate.denominator, 0)),
            "ranked": counts.get(rate.denominator, 0) >= min_cases,
            "label": f"{rate.zh} {rate.en}",
        }
        for rate in RATES
    }
