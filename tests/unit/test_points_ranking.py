"""Rankings: the monthly top three with its tie-break, frozen publications, half-year awards."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.commands import IssuedPointsCommand
from events.points import PointsRankingPublished, Rank, ranking_id
from projections.incident_decider import Rejected
from projections.points_decider import envelopes, publish
from projections.points_ranking import (
    TIE_BREAK,
    Credit,
    Snapshot,
    counted_in,
    ends,
    following,
    months_of,
    participation,
    preceding,
    progress,
    standings,
)
from tests.points import GRID, SHANGHAI, chief, worker


def at(day: int, month: int = 10, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=SHANGHAI)


def credit(account: str, points: int, deed_at: datetime, seq: int = 0) -> Credit:
    return Credit(account, points, deed_at, seq)


#: October in a compound of five households; hand-counted below
OCTOBER = [
    credit("hh-a", 10, at(3)), credit("hh-a", 8, at(20)),  # 18, last deed the 20th
    credit("hh-b", 18, at(12)),  # 18 too, reached on the 12th: ahead of hh-a
    credit("hh-c", 6, at(5)), credit("hh-c", 6, at(6)),  # 12, last deed the 6th
    credit("hh-d", 12, at(6)),  # 12, last deed the 6th as well: the id decides, c before d
    credit("hh-e", 30, at(31, hour=23)),  # 23:00 on 31 October, Shanghai: still October
    credit("hh-f", 50, at(1, month=11)),  # November: not in October's ranking
]


def ranks(*rows: tuple[str, int]) -> list[Rank]:
    return [Rank(rank=i + 1, account_id=a, points=p) for i, (a, p) in enumerate(rows)]


def test_the_monthly_ranking_matches_the_hand_count_ties_included() -> None:
    assert standings(OCTOBER, {}, "2026-10") == ranks(
        ("hh-e", 30), ("hh-b", 18), ("hh-a", 18), ("hh-c", 12), ("hh-d", 12))


def test_months_are_counted_on_the_shanghai_calendar() -> None:
    utc_evening = datetime.fromisoformat("2026-10-31T17:30:00+00:00")  # 01:30 on 1 November
    assert standings([credit("hh-x", 1, utc_evening)], {}, "2026-10") == []
    assert standings([credit("hh-x", 1, utc_evening)], {}, "2026-11")[0].points == 1


def test_a_published_month_is_frozen_and_what_came_after_counts_next_month() -> None:
    published = {"2026-10": {"hh-a": 4, "hh-b": 7}}  # hh-a's decisions up to seq 4 were in
    counted = credit("hh-a", 5, at(9), seq=3)
    late = credit("hh-a", 5, at(9), seq=5)  # decided after the publication
    stranger = credit("hh-z", 9, at(30), seq=0)  # an account the publication never saw
    assert counted_in(counted, published, half=False) == "2026-10"
    assert counted_in(late, published, half=False) == "2026-11"
    assert counted_in(stranger, published, half=False) == "2026-11"
    both = {**published, "2026-11": {"hh-a": 5}}  # November was published with it in
    assert counted_in(late, both, half=False) == "2026-11"
    assert counted_in(stranger, both, half=False) == "2026-12"
    assert standings([counted, late, stranger], published, "2026-11") == ranks(
        ("hh-z", 9), ("hh-a", 5))


def test_a_month_never_published_keeps_its_own_awards() -> None:
    published = {"2026-11": {"hh-a": 9}}
    assert counted_in(credit("hh-a", 5, at(9), seq=1), published, half=False) == "2026-10"


def test_the_half_year_winner_and_the_progress_award() -> None:
    credits = [
        credit("hh-a", 40, at(10, month=2)), credit("hh-a", 50, at(10, month=8)),  # +10
        credit("hh-b", 5, at(10, month=3)), credit("hh-b", 35, at(10, month=9)),  # +30
        credit("hh-c", 34, at(1, month=12)),  # +34 from nothing: the most progress
        credit("hh-d", 60, at(1, month=6)),  # did well in H1, nothing in H2
    ]
    assert standings(credits, {}, "2026H2")[0] == Rank(rank=1, account_id="hh-a", points=50)
    found = progress(credits, {}, "2026H2")
    assert found is not None
    assert (found.account_id, found.previous, found.current) == ("hh-c", 0, 34)
    assert progress([credit("hh-d", 60, at(1, month=6))], {}, "2026H2") is None


def test_participation_is_a_share_of_the_households_in_the_scheme() -> None:
    joined = {"hh-a": at(1, month=1), "hh-b": at(1, month=1), "hh-c": at(1, month=1),
              "hh-quiet": at(1, month=3), "hh-new": at(2, month=11)}
    month = participation(joined, OCTOBER, "2026-10")
    # a, b, c, d, e earned (d and e joined by earning); quiet did not; new joined later
    assert (month.households, month.with_points) == (6, 5)
    assert str(month.share) == "5/6"


def test_periods_follow_each_other() -> None:
    assert following("2026-12") == "2027-01" and preceding("2027-01") == "2026-12"
    assert following("2026H2") == "2027H1" and preceding("2026H1") == "2025H2"
    assert ends("2026-12") == datetime(2027, 1, 1, tzinfo=SHANGHAI)
    assert months_of("2026H2") == [f"2026-{m:02d}" for m in range(7, 13)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(1, 20), st.integers(1, 31)),
                max_size=30), st.randoms(use_true_random=False))
def test_a_ranking_does_not_depend_on_the_order_its_awards_arrive(
    rows: list[tuple[str, int, int]], rng: random.Random,
) -> None:
    credits = [credit(f"hh-{a}", p, at(min(d, 31))) for a, p, d in rows]
    table = standings(credits, {}, "2026-10")
    shuffled = list(credits)
    rng.shuffle(shuffled)
    assert standings(shuffled, {}, "2026-10") == table
    assert [r.rank for r in table] == list(range(1, len(table) + 1))
    assert [r.points for r in table] == sorted((r.points for r in table), reverse=True)
    assert sum(r.points for r in table) == sum(c.points for c in credits)


def publishing(period: str, at_: datetime, actor: object = chief) -> IssuedPointsCommand:
    return IssuedPointsCommand.model_validate({
        "command_id": str(uuid.uuid4()), "grid": GRID, "occurred_at": at_,
        "recorded_at": at_, "actor": actor, "command": {"type": "publish_ranking",
                                                        "period": period}})


def test_a_publication_is_the_frozen_top_three_with_its_watermark_and_tie_break() -> None:
    last_seq = {"hh-a": 3, "hh-b": 1, "hh-c": 2, "hh-d": 0, "hh-e": 0, "hh-f": 0}
    command = publishing("2026-10", at(1, month=11, hour=8))
    (payload,) = publish(command, Snapshot(OCTOBER, last_seq, {}, already=False))
    assert isinstance(payload, PointsRankingPublished)
    assert payload.ranks == ranks(("hh-e", 30), ("hh-b", 18), ("hh-a", 18))
    assert payload.watermark == last_seq and payload.tie_break == TIE_BREAK
    (event,) = envelopes(command, [payload], after_seq=-1)
    assert event.aggregate_id == ranking_id(GRID, "2026-10") == "ranking:2026-10:430382.101.003.07"


@pytest.mark.parametrize(("period", "when", "already", "actor", "code"), [
    ("2026-11", at(30, month=11, hour=23), False, chief, "period_open"),
    ("2026-10", at(1, month=11), True, chief, "already_published"),
    ("2026-10", at(1, month=11), False, worker, "forbidden_role"),
])
def test_a_ranking_is_published_once_by_the_committee_after_its_period(
    period: str, when: datetime, already: bool, actor: object, code: str,
) -> None:
    with pytest.raises(Rejected) as refused:
        publish(publishing(period, when, actor), Snapshot([], {}, {}, already=already))
    assert refused.value.code == code


def test_a_ranking_published_a_second_later_than_its_month_counts_everything() -> None:
    month_end = ends("2026-10")
    (payload,) = publish(publishing("2026-10", month_end + timedelta(seconds=1)),
                         Snapshot(OCTOBER, {}, {}, already=False))
    assert len(payload.ranks) == 3
