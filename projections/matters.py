"""The matters projection: timelines per incident, folded into the chain and the rates.

One consumer group, one transaction per batch: the five-have chain and the resolution-rate
facts move together, so a figure and the chains behind it always share a watermark.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from events.catalog import event_from_json
from events.envelope import Event
from events.log import FETCH_MAX_WAIT_MS
from events.patrol import PatrolLogged
from events.topics import INCIDENTS, PATROLS
from projections import live, resolution_rates
from projections.five_have import COLUMNS, Chain, fold, incidents_of, row
from projections.runner import Delivery
from projections.store import Cursor


class FiveHave:
    name = "five_have"
    topics: tuple[str, ...] = (INCIDENTS.name, PATROLS.name)
    as_written = False
    fetch_wait_ms = FETCH_MAX_WAIT_MS  # supervisors watch the chain live
    tables = {"incident_timeline": "incident_id, event_id, body", "five_have": "*",
              "funnel_counts": "*",
              "rate_facts": "*", "rate_daily": "*", "rate_monthly": "*",
              "rate_places": "*"}

    async def write(self, cur: Cursor, deliveries: Sequence[Delivery]) -> None:
        """Add the batch to the timelines, refold every touched matter into its chain and its
        rate facts, then move the rates and the funnel.

        Statements whose answers the next one does not need go together (pipeline mode): a
        live batch took 27 round trips to PostgreSQL, each a wait for a busy core; now 13.
        """
        conn = cur.connection
        added = await _add_to_timelines(cur, deliveries)
        touched = sorted({i for i, _ in added})
        patrols = [d.event for d in deliveries if isinstance(d.event.payload, PatrolLogged)]
        read, taken = conn.cursor(), conn.cursor()
        async with conn.pipeline():  # answers are read once it ends: one round trip
            if touched:
                await lock_matters(cur, touched)
                # the events this batch added are parsed already: only earlier ones come back
                await read.execute(
                    "select incident_id, event_id, case when event_id = any(%b) then null"
                    " else body end from incident_timeline where incident_id = any(%b)",
                    [[e.event_id for _, e in added], touched])
                await taken.execute("delete from five_have where incident_id = any(%b)"
                                    " returning grid, stage, overdue", [touched])
            taken_back = await resolution_rates.take_back(cur, touched, patrols)
        old, counted = await taken_back()
        timelines = _timelines(touched, added, await read.fetchall() if touched else [])
        before = await taken.fetchall() if touched else []
        matters = {i: resolution_rates.matter(i, events) for i, events in timelines.items()}
        if matters:
            async with cur.copy(f"copy five_have ({COLUMNS}) from stdin") as copy:
                for chain, _ in matters.values():
                    await copy.write_row(row(chain))
        new = [f for _, facts in matters.values() for f in facts]
        moved = await resolution_rates.record(cur, new, old, counted)
        async with conn.pipeline():
            if moved:
                await resolution_rates.roll_up(cur, patrolled=bool(counted))
            if matters:
                await _move_funnel(cur, before, [(c.grid, c.stage, c.overdue)
                                                 for c, _ in matters.values()])
            await live.announce(cur, [d.event for d in deliveries])

    async def settle(self, cur: Cursor) -> None:
        """A rebuild's batches hold their rate moves back: rolled up once, at its end."""
        await resolution_rates.roll_up_held(cur)


async def _add_to_timelines(cur: Cursor, deliveries: Sequence[Delivery]
                            ) -> list[tuple[str, Event[Any]]]:
    """Each event into the timeline of every incident it belongs to: the (incident, event)
    pairs that were not there yet (a redelivered copy adds nothing)."""
    pairs = [(i, d) for d in deliveries for i in incidents_of(d.event)]
    if not pairs:
        return []
    # A timeline keeps each event as the log holds it, the record's own bytes: encoding the
    # upcast event again was ~7 % of a chain rebuild's profile, and a read upcasts anyway.
    # Parameters go in binary (%b): psycopg's text form of a 500-body bytea[] cost more than
    # the rest of the statement (a regex per element).
    await cur.execute(
        "insert into incident_timeline (incident_id, event_id, body)"
        " select * from unnest(%b::text[], %b::uuid[], %b::bytea[])"
        " on conflict do nothing returning incident_id, event_id",
        [[i for i, _ in pairs], [d.event.event_id for _, d in pairs],
         [d.record.value for _, d in pairs]],
    )
    events = {d.event.event_id: d.event for _, d in pairs}
    return [(i, events[event_id]) for i, event_id in await cur.fetchall()]


async def lock_matters(cur: Cursor, incidents: Sequence[str]) -> None:
    """A patrol's findings touch incidents of other partitions, which another worker of this
    projection may be refolding now: each matter is read and refolded under its own lock
    (taken in one order, so two batches cannot deadlock), so neither misses the event the
    other added. The lock names the schema too: a rebuild in a schema of its own shares no
    rows with the live chain, and neither waits for the other's matters."""
    await cur.execute(
        "select pg_advisory_xact_lock(hashtext(current_schema()), h) from"
        " (select distinct hashtext(i) as h from unnest(%b::text[]) as u(i) order by h) m",
        [incidents],
    )


def _timelines(touched: Sequence[str], added: Sequence[tuple[str, Event[Any]]],
               rows: Sequence[tuple[str, Any, bytes | None]]) -> dict[str, list[Event[Any]]]:
    """The touched matters' whole timelines: the batch's own events as parsed, the earlier
    ones from their bodies."""
    parsed = {e.event_id: e for _, e in added}
    timelines: dict[str, list[Event[Any]]] = {i: [] for i in touched}
    for incident_id, event_id, body in rows:
        timelines[incident_id].append(parsed[event_id] if body is None
                                      else event_from_json(bytes(body)))
    return timelines


async def _move_funnel(cur: Cursor, before: Sequence[tuple[str | None, str, bool]],
                      after: Sequence[tuple[str | None, str, bool]]) -> None:
    """Move the matters counted per place and stage by what this batch changed, so the
    funnel of a county reads a row per stage, not its every chain."""
    moves: Counter[tuple[str, str]] = Counter()
    overdue: Counter[tuple[str, str]] = Counter()
    for sign, rows in ((-1, before), (1, after)):
        for grid, stage, late in rows:
            for place in resolution_rates.places_of(grid) if grid else ():
                moves[place, stage] += sign
                overdue[place, stage] += sign * late
    keys = sorted(k for k in moves.keys() | overdue.keys() if moves[k] or overdue[k])
    if keys:
        await cur.execute(
            "insert into funnel_counts (place, depth, stage, n, overdue)"
            " select * from unnest(%b::text[], %b::int[], %b::text[], %b::bigint[],"
            " %b::bigint[]) on conflict (place, stage) do update"
            " set n = funnel_counts.n + excluded.n,"
            " overdue = funnel_counts.overdue + excluded.overdue",
            [[p for p, _ in keys], [p.count("/") + 1 for p, _ in keys],
             [s for _, s in keys], [moves[k] for k in keys], [overdue[k] for k in keys]])
        # a stage back to no matters leaves no row, as a rebuild would not have one
        await cur.execute(
            "delete from funnel_counts where n = 0 and (place, stage) in"
            " (select * from unnest(%b::text[], %b::text[]))",
            [[p for p, _ in keys], [s for _, s in keys]])


async def timeline_of(cur: Cursor, incident_id: str) -> list[Event[Any]]:
    """An incident's timeline as the projection holds it, in arrival order."""
    await cur.execute("select body from incident_timeline where incident_id = %s", [incident_id])
    return [event_from_json(bytes(b)) for (b,) in await cur.fetchall()]


async def chain_of(cur: Cursor, incident_id: str) -> Chain:
    """The chain as the projection would fold it now (the decider's view of an incident)."""
    return fold(incident_id, await timeline_of(cur, incident_id))

