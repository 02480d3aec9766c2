"""SLA deadlines: working days on the grid's own calendar (Asia/Shanghai), holidays and 调休."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.incident import Category, Level
from projections.sla import DEFAULT_RULES, Calendar, Rules, load

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
RULES = load()

# The shipped file read independently of `load`, so the property below checks the arithmetic
# against the published calendar rather than against the calendar's own predicate.
SHIPPED = tomllib.loads(DEFAULT_RULES.read_text(encoding="utf-8"))
HOLIDAYS = {date.fromisoformat(d) for d in SHIPPED["calendar"]["holidays"]}
WORKDAYS = {date.fromisoformat(d) for d in SHIPPED["calendar"]["workdays"]}


def working(day: date) -> bool:
    """Monday to Friday unless a public holiday; a 调休 weekend day is worked."""
    return day in WORKDAYS or (day.weekday() < 5 and day not in HOLIDAYS)


def at(day: str, clock: str = "09:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("category", "level", "start", "deadline"),
    [
        # Friday + 1 working day: Saturday and Sunday are skipped.
        (Category.safety_hazard, Level.grid, at("2026-11-20", "09:12"), at("2026-11-23", "09:12")),
        # Friday + 3: Mon 23 (1), Tue 24 (2), Wed 25 (3).
        (Category.other, Level.grid, at("2026-11-20", "09:12"), at("2026-11-25", "09:12")),
        # Monday + 15: Nov 3-6 (4), 9-13 (9), 16-20 (14), Mon 23 (15).
        (Category.dispute, Level.county, at("2026-11-02"), at("2026-11-23")),
        # Saturday + 1: the weekend is skipped whichever day of it the clock starts on.
        (Category.public_order, Level.grid, at("2026-11-21", "22:30"), at("2026-11-23", "22:30")),
    ],
)
def test_a_deadline_skips_weekends(category: Category, level: Level, start: datetime,
                                   deadline: datetime) -> None:
    assert RULES.deadline(category, level, start) == deadline


@pytest.mark.parametrize(
    ("start", "deadline"),
    [
        # 元旦: Thu 1 and Fri 2 are holidays, Sat 3 a weekend, Sun 4 worked instead.
        (at("2025-12-31"), at("2026-01-04")),
        # 春节: Sat 14 Feb is worked; the next working day after it is Tue 24 Feb.
        (at("2026-02-13"), at("2026-02-14")),
        (at("2026-02-14"), at("2026-02-24")),
        # 端午: Fri 19 June is a holiday, then the weekend.
        (at("2026-06-18"), at("2026-06-22")),
        # 中秋: Fri 25 to Sun 27 Sept off; Sun 20 Sept is worked.
        (at("2026-09-24"), at("2026-09-28")),
        (at("2026-09-18"), at("2026-09-20")),
    ],
)
def test_a_one_day_deadline_skips_holidays_and_counts_the_weekend_days_worked_instead(
        start: datetime, deadline: datetime) -> None:
    assert RULES.deadline(Category.safety_hazard, Level.grid, start) == deadline


def test_national_day_is_skipped_and_the_saturday_after_it_is_a_working_day() -> None:
    # Wed 30 Sept + 3: Oct 1-7 off, Thu 8 (1), Fri 9 (2), Sat 10 worked (3).
    deadline = RULES.deadline(Category.dispute, Level.grid, at("2026-09-30", "10:00"))
    assert deadline == at("2026-10-10", "10:00")
    assert deadline.isoweekday() == 6


@pytest.mark.parametrize(
    ("day", "is_working"),
    [
        ("2026-10-09", True),  # Friday
        ("2026-10-10", True),  # Saturday, 调休
        ("2026-10-11", False),  # Sunday
        ("2026-10-01", False),  # Thursday, National Day
        ("2026-02-28", True),  # Saturday, 调休
        ("2026-06-19", False),  # Friday, 端午
        ("2026-11-23", True),  # an ordinary Monday
    ],
)
def test_the_shipped_calendar_knows_which_days_are_worked(day: str, is_working: bool) -> None:
    assert RULES.calendar.is_working(date.fromisoformat(day)) is is_working


def test_days_are_counted_in_shanghai_not_in_the_timezone_of_the_start() -> None:
    # 17:00 UTC on Friday 9 Oct is 01:00 on Saturday 10 Oct in Shanghai, a working Saturday:
    # one working day later is Monday 12 Oct 01:00 there. Counting on the UTC calendar would
    # give Saturday 10 Oct 17:00 UTC (Sunday 01:00 in Shanghai) instead.
    deadline = RULES.deadline(Category.safety_hazard, Level.grid,
                              datetime(2026, 10, 9, 17, 0, tzinfo=UTC))
    assert deadline == at("2026-10-12", "01:00")
    assert deadline.utcoffset() == timedelta(hours=8)


def test_a_start_given_in_another_timezone_keeps_its_instant() -> None:
    start = datetime(2026, 10, 9, 12, 0, tzinfo=NEW_YORK)  # 00:00 Saturday 10 Oct in Shanghai
    assert RULES.deadline(Category.safety_hazard, Level.grid, start) == at("2026-10-12", "00:00")


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(2025, 12, 1), max_value=datetime(2026, 12, 31),
                 timezones=st.sampled_from([UTC, SHANGHAI, NEW_YORK]), allow_imaginary=False),
    st.sampled_from(list(Category)),
    st.sampled_from(list(Level)),
)
def test_a_deadline_is_the_rules_number_of_working_days_later_at_the_same_local_time(
        start: datetime, category: Category, level: Level) -> None:
    deadline = RULES.deadline(category, level, start)
    local_start, local_end = start.astimezone(SHANGHAI), deadline.astimezone(SHANGHAI)
    days = SHIPPED["deadline_days"][category.value][level.value]
    between = [local_start.date() + timedelta(days=n)
               for n in range(1, (local_end.date() - local_start.date()).days + 1)]
    assert deadline > start
    assert local_end.time() == local_start.time()
    assert working(local_end.date())
    assert sum(working(d) for d in between) == days


def test_escalation_walks_up_the_ladder_and_stops_at_the_top() -> None:
    assert [RULES.above(level) for level in Level] == [
        Level.community, Level.town, Level.county, None]


def test_the_ladder_is_the_one_configured_not_a_fixed_one() -> None:
    short = Rules(deadline_days={}, ladder=(Level.grid, Level.town), grace=timedelta(0),
                  calendar=Calendar(weekend=frozenset(), holidays=frozenset(),
                                    workdays=frozenset()))
    assert short.above(Level.grid) is Level.town
    assert short.above(Level.town) is None


def test_a_calendar_without_weekends_counts_every_day() -> None:
    every_day = Rules(deadline_days={"other": {"grid": 3}}, ladder=(Level.grid,),
                      grace=timedelta(0),
                      calendar=Calendar(weekend=frozenset(), holidays=frozenset(),
                                        workdays=frozenset()))
    assert every_day.deadline(Category.other, Level.grid, at("2026-11-20")) == at("2026-11-23")


def test_the_shipped_rules_load_as_published() -> None:
    assert load() == load(DEFAULT_RULES)
    assert RULES.grace == timedelta(hours=4)  # grace_seconds = 14400
    assert RULES.ladder == (Level.grid, Level.community, Level.town, Level.county)
    assert RULES.calendar.weekend == frozenset({6, 7})
    assert date(2026, 10, 1) in RULES.calendar.holidays
    assert date(2026, 10, 10) in RULES.calendar.workdays


def test_every_category_has_a_deadline_at_every_level_and_higher_levels_get_no_less_time(
        ) -> None:
    for category in Category:
        days = [RULES.deadline_days[category.value][level.value] for level in RULES.ladder]
        assert all(d > 0 for d in days), category
        assert days == sorted(days), category


def test_the_days_worked_instead_are_weekend_days_and_never_holidays() -> None:
    calendar = RULES.calendar
    assert all(day.isoweekday() in calendar.weekend for day in calendar.workdays)
    assert not calendar.workdays & calendar.holidays
    assert {day.year for day in calendar.holidays | calendar.workdays} == {2026}
