"""Periods a figure is asked for: closed ranges of Shanghai calendar days, named as people say
them (a year, a quarter, a month, an ISO week, a day, or any range of at most ten years)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.periods import BUCKETS, Period, between, bucket_label, period, whole_months


@pytest.mark.parametrize(("text", "first", "last"), [
    ("2023", date(2023, 1, 1), date(2023, 12, 31)),
    ("2024-Q1", date(2024, 1, 1), date(2024, 3, 31)),
    ("2024-Q2", date(2024, 4, 1), date(2024, 6, 30)),
    ("2024-Q3", date(2024, 7, 1), date(2024, 9, 30)),
    ("2024-Q4", date(2024, 10, 1), date(2024, 12, 31)),
    ("2024-02", date(2024, 2, 1), date(2024, 2, 29)),  # a leap year's February
    ("2023-02", date(2023, 2, 1), date(2023, 2, 28)),
    ("1900-02", date(1900, 2, 1), date(1900, 2, 28)),  # a century is not a leap year...
    ("2000-02", date(2000, 2, 1), date(2000, 2, 29)),  # ...unless it divides by 400
    ("2023-04", date(2023, 4, 1), date(2023, 4, 30)),
    ("2023-12", date(2023, 12, 1), date(2023, 12, 31)),
    ("2026-W01", date(2025, 12, 29), date(2026, 1, 4)),  # ISO week 1 holds the first Thursday
    ("2023-W07", date(2023, 2, 13), date(2023, 2, 19)),
    ("2020-W53", date(2020, 12, 28), date(2021, 1, 3)),  # a year with 53 ISO weeks
    ("2023-05-03", date(2023, 5, 3), date(2023, 5, 3)),
])
def test_a_period_is_the_closed_range_of_days_it_names(text: str, first: date,
                                                       last: date) -> None:
    assert period(text) == Period(text, first, last)


@pytest.mark.parametrize(("text", "days"), [
    ("2023", 365), ("2024", 366), ("2024-Q1", 91), ("2023-Q1", 90), ("2024-02", 29),
    ("2026-W01", 7), ("2023-05-03", 1)])
def test_a_period_counts_its_days_inclusively(text: str, days: int) -> None:
    assert period(text).days == days


@pytest.mark.parametrize("text", [
    "2023-13", "2023-00", "2023-W54", "2023-W53", "2023-W00", "2023-Q5", "2023-Q0", "x", "",
    "2023-02-30", "2023-5", "23"])
def test_a_period_that_names_no_such_range_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        period(text)


def test_a_range_is_its_two_days_inclusive() -> None:
    ten_years = between(date(2014, 1, 1), date(2023, 12, 31))
    assert (ten_years.first, ten_years.last) == (date(2014, 1, 1), date(2023, 12, 31))
    assert ten_years.label == "2014-01-01..2023-12-31"
    assert between(date(2023, 5, 3), date(2023, 5, 3)).days == 1


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError):
        between(date(2023, 5, 3), date(2023, 5, 2))


@pytest.mark.parametrize("last", [date(2025, 1, 1), date(2024, 2, 1), date(2040, 1, 1)])
def test_a_range_of_more_than_ten_years_is_refused(last: date) -> None:
    with pytest.raises(ValueError):
        between(date(2014, 1, 1), last)


def bucket_start(by: str, day: date) -> date:
    """The first day of the `by` bucket holding `day`, worked out without `bucket_label`."""
    if by == "year":
        return date(day.year, 1, 1)
    if by == "quarter":
        return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    if by == "month":
        return day.replace(day=1)
    if by == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks begin on Monday
    return day


@pytest.mark.parametrize(("by", "start", "label"), [
    ("year", date(2023, 1, 1), "2023"),
    ("quarter", date(2024, 10, 1), "2024-Q4"),
    ("month", date(2024, 2, 1), "2024-02"),
    ("week", date(2025, 12, 29), "2026-W01"),  # the week belongs to the year of its Thursday
    ("week", date(2021, 1, 4), "2021-W01"),
    ("day", date(2023, 5, 3), "2023-05-03"),
])
def test_a_bucket_is_named_as_a_period_is_asked_for(by: str, start: date, label: str) -> None:
    assert bucket_label(by, start) == label


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(BUCKETS)),
       st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)))
def test_a_buckets_label_names_the_period_that_begins_on_its_start(by: str, day: date) -> None:
    start = bucket_start(by, day)
    named = period(bucket_label(by, start))
    assert named.first == start
    assert named.first <= day <= named.last
    following = named.last + timedelta(days=1)
    assert bucket_start(by, following) == following  # the next bucket starts the day after


@settings(max_examples=300)
@given(st.dates(date(2020, 1, 1), date(2030, 12, 31)), st.integers(0, 800))
def test_whole_months_and_the_days_around_them_cover_a_period_once(first: date,
                                                                   days: int) -> None:
    span = between(first, first + timedelta(days=days))
    start, end = whole_months(span)
    before = {span.first + timedelta(d) for d in range((start - span.first).days)}
    months = {start + timedelta(d) for d in range((end - start).days)}
    after = {end + timedelta(d) for d in range((span.last - end).days + 1)}
    assert before | months | after == {span.first + timedelta(d) for d in range(span.days)}
    assert len(before) + len(months) + len(after) == span.days
    if months:  # whole months only, and every whole month of the period among them
        assert start.day == 1 and end.day == 1
    whole = {d.replace(day=1) for d in before | after
             if period(f"{d.year}-{d.month:02d}").first >= span.first
             and period(f"{d.year}-{d.month:02d}").last <= span.last}
    assert not whole


@pytest.mark.parametrize(("today", "as_of", "days"), [
    (date(2026, 11, 29), date(2026, 11, 29), 29),  # running: judged today, 29 days lived
    (date(2026, 12, 3), date(2026, 11, 30), 30),  # over: its own last day, all its days
    (date(2026, 11, 1), date(2026, 11, 1), 1),  # its first day
    (date(2026, 10, 30), date(2026, 10, 30), 0),  # not yet begun: no day lived
])
def test_a_running_period_is_judged_as_of_today_and_a_past_one_on_its_last_day(
        today: date, as_of: date, days: int) -> None:
    november = period("2026-11")
    assert (november.as_of(today), november.days_until(today)) == (as_of, days)
