"""Resolution-rate reads: figures per place and period, their explanation, CSV, the funnel.

Sums of the rollups per place, so a town's rate is its grids' numerators over their
denominators: a period's whole months from the monthly grain (`rate_monthly`), its other days
from the daily one (`rate_daily`). Explanations and percentiles read the facts behind them.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from events.envelope import PLACE_PATTERN, place_path
from projections.periods import Period, between, bucket_label, period, whole_months
from projections.resolution_rates import DURATIONS, MEASURES, RATE_BY_NAME, figures
from projections.sla import LOCAL
from projections.store import Cursor, below
from services.auth import Caller, Principal
from services.errors import Invalid, json_response
from services.watermark import Watermarks, parse_min_offsets

router = APIRouter()
Place = Annotated[str, Query(max_length=100, pattern=PLACE_PATTERN,
                                    description="county[/town[/community[/grid]]]")]
QUIET_DAYS = 3  # a grid not patrolled for this many days is listed
EXPLAIN_LIMIT = 5000


def _spanned(columns: str, where: str) -> str:
    """A period's rollup rows in the fewest: its whole months from `rate_monthly`, the days
    before and after them from `rate_daily` (a county's year reads 12 rows a measure, not
    365). Parameters: those of `where`, and `spanned()`'s."""
    return " union all ".join(
        f"select {columns} from {table} where {where}"  # noqa: S608 - our own fragments
        f" and day >= %({low})s and day {op} %({high})s"
        for table, low, op, high in (("rate_monthly", "months_from", "<", "months_to"),
                                     ("rate_daily", "first", "<", "months_from"),
                                     ("rate_daily", "months_to", "<=", "last")))


def spanned(span: Period, **where: object) -> dict[str, object]:
    months_from, months_to = whole_months(span)
    return {**where, "first": span.first, "last": span.last,
            "months_from": months_from, "months_to": months_to}


#: the statements the figures are read with, by name (`make bench` EXPLAINs them at a
#: county of 100,000 incidents: docs/EXPLAIN.md)
SQL = {
    "counts": (
        "select measure, sum(n)::bigint, sum(total)"  # noqa: S608 - our own fragments
        f" from ({_spanned('measure, n, total', 'place = %(place)s')}) as s group by measure"
    ),
    "p90": (
        "select measure, percentile_cont(0.9) within group (order by value)"
        " from rate_facts where measure = any(%s) and (grid = %s or grid like %s)"
        " and day between %s and %s and value is not null group by measure"
    ),
    "patrol_coverage": (  # each grid under the place, and the last day it was patrolled
        "select g.place, (select max(d.day) from rate_daily d where d.measure = 'patrolled'"
        "   and d.depth = 4 and d.place = g.place and d.day <= %s)"
        " from rate_places g where g.depth = 4 and (g.place = %s or g.place like %s)"
        " order by g.place"
    ),
    "closed_at_end": (
        "select coalesce(sum(n), 0)::bigint from rate_daily where place = %s"
        " and measure = 'closed' and day between %s and %s"
    ),
    "series": (  # by month, quarter or year: a month's row lies inside one bucket
        "select date_trunc(%(by)s, day)::date, measure, sum(n)::bigint"  # noqa: S608
        f" from ({_spanned('day, measure, n', 'place = %(place)s')}) as s"
        " group by 1, 2 order by 1"
    ),
    "series_by_day": (  # by day or week
        "select date_trunc(%s, day)::date, measure, sum(n)::bigint from rate_daily"
        " where place = %s and day between %s and %s group by 1, 2 order by 1"
    ),
    "children": (
        "select place, measure, sum(n)::bigint"  # noqa: S608 - our own fragments
        f" from ({_spanned('place, measure, n', 'depth = %(depth)s and place like %(under)s')})"
        " as s group by 1, 2 order by 1"
    ),
    "funnel": (  # kept per place and stage by the chain projection
        "select stage, n, overdue from funnel_counts where place = %s"
    ),
}


def in_scope(caller: Principal, place: str) -> str:
    try:
        place_path(place)
    except ValueError as exc:
        raise Invalid("place", str(exc)) from None
    caller.require(place)
    return place


def asked_period(text: str | None, first: date | None, last: date | None) -> Period:
    """The period asked for; without one, this month on the local calendar."""
    try:
        if first is not None or last is not None:
            if first is None or last is None:
                raise Invalid("from" if first is None else "to", "give both from and to")
            return between(first, last)
        if text is None:
            today = datetime.now(LOCAL).date()
            return period(f"{today.year}-{today.month:02d}")
        return period(text)
    except ValueError as exc:
        raise Invalid("period", str(exc)) from None


async def counts_of(cur: Cursor, place: str, span: Period) -> tuple[dict[str, int],
                                                                      dict[str, float]]:
    await cur.execute(SQL["counts"], spanned(span, place=place))
    rows = await cur.fetchall()
    return {m: int(n) for m, n, _ in rows}, {m: float(t) for m, _, t in rows}  # t: numeric


async def durations_of(cur: Cursor, place: str, span: Period, counts: dict[str, int],
                       totals: dict[str, float], p90: bool) -> dict[str, dict[str, float | None]]:
    """Averages from the rollup; the p90 only when asked, as it sorts every fact of the
    period (tens of milliseconds for a county's year, against a few for everything else)."""
    tail: dict[str, float] = {}
    if p90:
        await cur.execute(
            SQL["p90"],
            [list(DURATIONS.values()), *below(place), span.first, span.last])
        tail = {m: v for m, v in await cur.fetchall() if v is not None}
    return {name: {"average_s": round(totals[m] / counts[m], 1) if counts.get(m) else None,
                   **({"p90_s": round(tail[m], 1) if m in tail else None} if p90 else {})}
            for name, m in DURATIONS.items()}


async def patrol_coverage(cur: Cursor, place: str, span: Period, counts: dict[str, int],
                          today: date) -> dict[str, Any]:
    """From the rollup: grid-days patrolled are a count like any other; the grids quiet are
    those without a patrol row in the last days up to the period's end, or up to today while
    it runs (judged on its unlived last day, every grid had read as quiet, even one patrolled
    this morning), and the days it is averaged over are the days lived so far."""
    as_of = span.as_of(today)
    await cur.execute(SQL["patrol_coverage"], [as_of, *below(place)])
    last = dict(await cur.fetchall())
    quiet_since = as_of - timedelta(days=QUIET_DAYS)
    quiet = [g for g, day in last.items() if day is None or day <= quiet_since]
    days = span.days_until(today)
    return {
        "as_of": as_of.isoformat(),
        "grids": len(last),
        "grids_patrolled_per_day":
            round(counts.get("grid_days_patrolled", 0) / days, 2) if days else 0.0,
        "not_patrolled_for_days": QUIET_DAYS,
        "quiet_grids": [{"grid": g, "last_patrol": last[g].isoformat() if last.get(g) else None}
                        for g in quiet],
    }


async def gaming_guards(cur: Cursor, place: str, span: Period, counts: dict[str, int],
                        min_cases: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flags beside the raw figures, and the closure rates without suspect closures (their
    `_clean` counts, kept by the projection)."""
    tail_first = max(span.first, span.last - timedelta(days=1))
    await cur.execute(SQL["closed_at_end"], [place, tail_first, span.last])
    (closed_at_end,) = await cur.fetchone() or (0,)
    closed = counts.get("closed", 0)
    expected = closed * ((span.last - tail_first).days + 1) / span.days
    adjusted = figures({**counts, **{m: counts.get(f"{m}_clean", 0)
                                     for m in ("due_closed", "due_closed_on_time")}},
                       min_cases)
    flags = {
        "closed_by_reporter": counts.get("closed_by_reporter", 0),
        "reopened_within_7_days": counts.get("reopened_soon", 0),
        "repeated_rework": counts.get("repeated_rework", 0),
        "closed_in_last_2_days": int(closed_at_end),
        "bulk_closing_at_period_end": closed >= min_cases and closed_at_end > 3 * expected,
    }
    return flags, {k: adjusted[k] for k in ("closure_rate", "on_time_closure_rate")}


def watermarks(request: Request) -> Watermarks:
    return request.app.state.watermarks  # type: ignore[no-any-return]


@router.get("/v1/rates", responses={200: {"content": {
    "application/json": {}, "text/csv": {"schema": {"type": "string"}}}}})
async def rates(
    request: Request, caller: Caller, place: Place,
    period_: Annotated[str | None, Query(alias="period", max_length=20)] = None,
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
    by: Literal["day", "week", "month", "quarter", "year"] | None = None,
    children: bool = False,
    p90: Annotated[bool, Query(description="add each duration's 90th percentile (reads the"
                                           " facts: slower)")] = False,
    format_: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    min_offsets: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    """A place's figures for a period: counts, rates as exact fractions, average durations,
    patrol coverage, gaming guards; `by=` adds a series, `children=true` a drill-down table,
    `p90=true` the durations' 90th percentiles."""
    place = in_scope(caller, place)
    span = asked_period(period_, first, last)
    marks = watermarks(request)
    if min_offsets:
        await marks.wait_for(parse_min_offsets(min_offsets),
                             request.app.state.settings.read_wait_seconds)
    min_cases = request.app.state.settings.min_cases
    async with request.app.state.store.cursor() as cur:
        counts, totals = await counts_of(cur, place, span)
        body: dict[str, Any] = {
            "place": place, "period": _period_json(span), "counts": counts,
            "rates": figures(counts, min_cases),
            "durations": await durations_of(cur, place, span, counts, totals, p90),
            "patrol_coverage": await patrol_coverage(cur, place, span, counts,
                                                     datetime.now(LOCAL).date()),
            "min_cases": min_cases,
        }
        body["flags"], body["adjusted_rates"] = await gaming_guards(cur, place, span, counts,
                                                                     min_cases)
        if by is not None:
            body["series"] = await _series(cur, place, span, by, min_cases)
        if children:
            body["children"] = await _children(cur, place, span, min_cases)
    body["watermark"] = await marks.disclose()
    if format_ == "csv":
        return _csv(body)
    return json_response(body)


async def _series(cur: Cursor, place: str, span: Period, by: str, min_cases: int
                  ) -> list[dict[str, Any]]:
    if by in ("day", "week"):
        await cur.execute(SQL["series_by_day"], [by, place, span.first, span.last])
    else:
        await cur.execute(SQL["series"], spanned(span, by=by, place=place))
    buckets: dict[date, dict[str, int]] = {}
    for start, measure, n in await cur.fetchall():
        buckets.setdefault(start, {})[measure] = int(n)
    return [{"period": bucket_label(by, start), "counts": c, "rates": figures(c, min_cases)}
            for start, c in buckets.items()]


async def _children(cur: Cursor, place: str, span: Period, min_cases: int
                    ) -> list[dict[str, Any]]:
    await cur.execute(SQL["children"],
                      spanned(span, depth=len(place.split("/")) + 1, under=below(place)[1]))
    rows: dict[str, dict[str, int]] = {}
    for child, measure, n in await cur.fetchall():
        rows.setdefault(child, {})[measure] = int(n)
    return [{"place": child, "counts": c, "rates": figures(c, min_cases)}
            for child, c in rows.items()]


def _period_json(span: Period) -> dict[str, str]:
    return {"label": span.label, "from": span.first.isoformat(), "to": span.last.isoformat()}


def _csv(body: dict[str, Any]) -> Response:
    """One row per place (or period) and rate, as supervisors paste into reports."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["place", "period", "rate", "label", "numerator", "denominator", "percent"])
    rows = [(body["place"], body["period"]["label"], body["rates"])]
    rows += [(c["place"], body["period"]["label"], c["rates"]) for c in body.get("children", [])]
    rows += [(body["place"], s["period"], s["rates"]) for s in body.get("series", [])]
    for where, when, rated in rows:
        for name, f in rated.items():
            writer.writerow([where, when, name, f["label"], f["numerator"], f["denominator"],
                             "" if f["percent"] is None else f"{f['percent']:.1f}"])
    return Response(("\ufeff" + out.getvalue()).encode("utf-8"),  # BOM: Excel reads UTF-8
                    media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="rates.csv"'})


@router.get("/v1/rates/explain")
async def explain(
    request: Request, caller: Caller, place: Place,
    figure: Annotated[str, Query(max_length=64, description="a rate or a measure")],
    period_: Annotated[str | None, Query(alias="period", max_length=20)] = None,
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
) -> Response:
    """How a figure came about: its formula, the counts, and the events behind each count."""
    place = in_scope(caller, place)
    span = asked_period(period_, first, last)
    rate = RATE_BY_NAME.get(figure)
    measures = [rate.numerator, rate.denominator] if rate else [figure]
    marks = await watermarks(request).disclose()  # before reading: the facts are at least this
    parts: dict[str, dict[str, Any]] = {}
    async with request.app.state.store.cursor() as cur:
        counts, _ = await counts_of(cur, place, span)
        for measure in measures:
            await cur.execute(
                "select incident_id, event_id, day from rate_facts where measure = %s"
                " and (grid = %s or grid like %s) and day between %s and %s"
                " order by day, incident_id limit %s",
                [measure, *below(place), span.first, span.last, EXPLAIN_LIMIT + 1])
            rows = await cur.fetchall()
            parts[measure] = {
                "measure": measure, "count": counts.get(measure, 0),
                "facts": [{"incident_id": i, "event_id": str(e) if e else None,
                           "day": d.isoformat()} for i, e, d in rows[:EXPLAIN_LIMIT]],
                "truncated": len(rows) > EXPLAIN_LIMIT,
            }
    if rate is None and not parts[figure]["count"] and figure not in MEASURES:
        raise Invalid("figure", f"no rate or measure named {figure}")
    answer: dict[str, Any] = {"place": place, "period": _period_json(span), "figure": figure,
                              "watermark": marks}
    if rate:
        num, den = parts[rate.numerator], parts[rate.denominator]
        answer.update({
            "formula": f"{rate.zh} = {rate.numerator} / {rate.denominator}",
            "label": f"{rate.zh} {rate.en}",
            **figures({rate.numerator: num["count"], rate.denominator: den["count"]},
                      request.app.state.settings.min_cases)[rate.name],
            "numerator_facts": num, "denominator_facts": den,
        })
    else:
        answer["facts"] = parts[figure]
    return json_response(answer)


@router.get("/v1/funnel")
async def funnel(request: Request, caller: Caller, place: Place) -> Response:
    """How many matters sit at each link of the chain now, and how many are overdue."""
    place = in_scope(caller, place)
    async with request.app.state.store.cursor() as cur:
        await cur.execute(SQL["funnel"], [place])
        rows = await cur.fetchall()
    stages = {stage: int(n) for stage, n, _ in rows}
    return json_response({
        "place": place, "stages": stages, "overdue": sum(int(o) for *_, o in rows),
        "funnel": {"report": stages.get("reported", 0) + stages.get("assigned", 0),
                   "own": stages.get("owned", 0), "resolve": stages.get("resolved", 0),
                   "supervise": stages.get("verified", 0), "closed": stages.get("closed", 0)},
        "watermark": await watermarks(request).disclose(),
    })
