"""The matters projection: timelines per incident, folded into the chain and the rates.

One consumer group, one transaction per batch: the five-have chain and the resolution-rate
facts move together, so a figure and the chains behind it always share a watermark.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import islice
from typing import Any
from uuid import UUID

import prometheus_client

from events.catalog import event_from_json
from events.codec import canonical
from events.envelope import Event
from events.log import FETCH_MAX_WAIT_MS
from events.patrol import PatrolLogged
from events.topics import INCIDENTS, PATROLS
from projections import live, resolution_rates
from projections.five_have import COLUMNS, Chain, fold, incidents_of, row
from projections.resolution_rates import Folded
from projections.runner import Delivery
from projections.store import Cursor

FOLDS = prometheus_client.Counter(
    "gridgov_matters_folded_total",
    "Matters the chain projection folded: on from where it kept them, or over the whole timeline",
    ["how"])


class FiveHave:
    name = "five_have"
    topics: tuple[str, ...] = (INCIDENTS.name, PATROLS.name)
    as_written = False
    fetch_wait_ms = FETCH_MAX_WAIT_MS  # supervisors watch the chain live
    tables = {"incident_timeline": "incident_id, event_id, body", "five_have": "*",
              "funnel_counts": "*",
              "rate_facts": "*", "rate_daily": "*", "rate_monthly": "*",
              "rate_places": "*"}

    remembered = 10_000  # matters kept folded, to fold on from (~3.5 KB each)

    def __init__(self) -> None:
        # the matters this projection folded last, least recent first: a batch folds its
        # events on to them instead of parsing and folding each whole timeline again
        self._folded: dict[str, Folded] = {}

    async def write(self, cur: Cursor, deliveries: Sequence[Delivery]) -> None:
        """Add the batch to the timelines, fold every touched matter on into its chain and its
        rate facts, then move the rates."""
        touched = await self._touched(cur, deliveries)
        matters = {i: folded.figures() for i, folded in touched.items()}
        if matters:
            await cur.execute("delete from five_have where incident_id = any(%b)"
                              " returning grid, stage, overdue", [list(matters)])
            before = await cur.fetchall()
            async with cur.copy(f"copy five_have ({COLUMNS}) from stdin") as copy:
                for chain, _ in matters.values():
                    await copy.write_row(row(chain))
            await _move_funnel(cur, before, [(c.grid, c.stage, c.overdue)
                                             for c, _ in matters.values()])
        patrols = [d.event for d in deliveries if isinstance(d.event.payload, PatrolLogged)]
        await resolution_rates.record(cur, {i: f for i, (_, f) in matters.items()}, patrols)
        await live.announce(cur, [d.event for d in deliveries])

    async def _touched(self, cur: Cursor, deliveries: Sequence[Delivery]) -> dict[str, Folded]:
        """Each matter this batch added an event to, folded over its whole timeline."""
        pairs = [(i, d.event) for d in deliveries for i in incidents_of(d.event)]
        if not pairs:
            return {}
        # parameters go in binary (%b): psycopg's text form of a 500-body bytea[] cost more
        # than the rest of the statement (a regex per element)
        await cur.execute(
            "insert into incident_timeline (incident_id, event_id, body)"
            " select * from unnest(%b::text[], %b::uuid[], %b::bytea[])"
            " on conflict do nothing returning incident_id, event_id",
            [[i for i, _ in pairs], [e.event_id for _, e in pairs],
             [canonical(e) for _, e in pairs]],
        )
        inserted = await cur.fetchall()  # a redelivered copy adds nothing
        touched = sorted({i for i, _ in inserted})
        if not touched:
            return {}
        # A patrol's findings touch incidents of other partitions, which another worker of
        # this projection may be refolding now: each matter is read and refolded under its
        # own lock (taken in one order, so two batches cannot deadlock), so neither misses
        # the event the other added.
        await cur.execute(
            "select pg_advisory_xact_lock(5, h) from"
            " (select distinct hashtext(i) as h from unnest(%b::text[]) as u(i) order by h) m",
            [touched],
        )
        added = {event_id for _, event_id in inserted}
        parsed = {e.event_id: e for _, e in pairs if e.event_id in added}
        kept = {i: self._folded.pop(i) for i in touched if i in self._folded}
        timelines = await _timelines(cur, touched, parsed, [*parsed, *(
            event_id for folded in kept.values() for event_id in folded.event_ids)])
        matters: dict[str, Folded] = {}
        for i in touched:  # a matter not kept is folded on from nothing, from the bodies read
            if (on := _folded_on(kept.get(i) or Folded.of(i, []), timelines[i])) is not None:
                matters[i] = on
        # The timeline is the truth; a kept matter only saves work: one whose events are no
        # longer all in it (a batch rolled back), or that a late event lands before, or whose
        # timeline holds an event it never saw that is not parsed here, is folded again whole.
        if again := [i for i in touched if i not in matters]:
            whole = await _timelines(cur, again, parsed, list(parsed))
            for i in again:
                matters[i] = Folded.of(i, [e for e in whole[i].values() if e is not None])
        FOLDS.labels("on").inc(len(kept.keys() - again))
        FOLDS.labels("whole").inc(len(touched) - len(kept.keys() - again))
        matters = {i: matters[i] for i in touched}  # in the order of their locks, as before
        self._folded |= matters
        for least_recent in list(islice(self._folded, max(0, len(self._folded) - self.remembered))):
            del self._folded[least_recent]
        return matters


def _folded_on(kept: Folded, timeline: dict[UUID, Event[Any] | None]) -> Folded | None:
    """A kept matter folded on by the events of its timeline it has not seen, or None if it
    cannot be (see `FiveHave._touched`)."""
    if not kept.event_ids <= timeline.keys():
        return None
    unseen = [timeline[i] for i in timeline.keys() - kept.event_ids]
    if any(event is None for event in unseen):
        return None
    return kept.then([e for e in unseen if e is not None])


async def _timelines(cur: Cursor, incidents: Sequence[str], parsed: dict[UUID, Event[Any]],
                     unread: Sequence[UUID]) -> dict[str, dict[UUID, Event[Any] | None]]:
    """Each incident's timeline by event id: the events parsed already, the body of each
    other event parsed, except those in `unread` (None: the caller holds them folded)."""
    await cur.execute(
        "select incident_id, event_id, case when event_id = any(%b) then null else body end"
        " from incident_timeline where incident_id = any(%b)",
        [list(unread), list(incidents)],
    )
    timelines: dict[str, dict[UUID, Event[Any] | None]] = {i: {} for i in incidents}
    for incident_id, event_id, body in await cur.fetchall():
        timelines[incident_id][event_id] = parsed.get(event_id) if body is None \
            else event_from_json(bytes(body))
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

