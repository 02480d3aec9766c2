"""Periods a figure is asked for: a year, quarter, month, ISO week, day, or any from-to range.

Every period is a closed range of Asia/Shanghai calendar days, so any period's figure is a sum
of the daily grain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Period:
    label: str
    first: date
    last: date  # inclusive

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def as_of(self, today: date) -> date:
        """The day a running period is judged on: today, not its last day, which has not
        come yet (no grid can have been patrolled then); a past period's own last day."""
        return min(self.last, today)

    def days_until(self, today: date) -> int:
        """Its days up to and including `today`: none for a period not yet begun."""
        return max((self.as_of(today) - self.first).days + 1, 0)


def period(text: str) -> Period:
    """'2023', '2023-Q2', '2023-05', '2023-W07' or '2023-05-03'; ValueError says what is wrong."""
    if m := re.fullmatch(r"(\d{4})", text):
        year = int(m[1])
        return Period(text, date(year, 1, 1), date(year, 12, 31))
    if m := re.fullmatch(r"(\d{4})-Q([1-4])", text):
        year, quarter = int(m[1]), int(m[2])
        first = date(year, 3 * quarter - 2, 1)
        return Period(text, first, _month_end(date(year, 3 * quarter, 1)))
    if m := re.fullmatch(r"(\d{4})-W(\d{2})", text):
        try:
            first = date.fromisocalendar(int(m[1]), int(m[2]), 1)
        except ValueError:
            raise ValueError(f"{text}: no such ISO week") from None
        return Period(text, first, first + timedelta(days=6))
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
        if not 1 <= int(m[2]) <= 12:
            raise ValueError(f"{text}: no such month")
        first = date(int(m[1]), int(m[2]), 1)
        return Period(text, first, _month_end(first))
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError("a period is YYYY, YYYY-Qn, YYYY-MM, YYYY-Www or YYYY-MM-DD") from None
    return Period(text, day, day)


def between(first: date, last: date) -> Period:
    if last < first:
        raise ValueError("`to` is before `from`")
    if (last - first).days > 3660:
        raise ValueError("a range is at most ten years")
    return Period(f"{first.isoformat()}..{last.isoformat()}", first, last)


def whole_months(span: Period) -> tuple[date, date]:
    """The whole calendar months inside a period, as [start, end) of first days; the period's
    other days lie before and after them. Without a whole month both are the day after it,
    so every day is "before" (the monthly grain serves whole months, the daily one the rest)."""
    start = span.first if span.first.day == 1 else _month_end(span.first) + timedelta(days=1)
    end = (span.last + timedelta(days=1)).replace(day=1)
    if start > end:
        return span.last + timedelta(days=1), span.last + timedelta(days=1)
    return start, end


def _month_end(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


BUCKETS = {"day": "day", "week": "week", "month": "month", "quarter": "quarter", "year": "year"}


def bucket_label(by: str, start: date) -> str:
    """How a series bucket starting on `start` is named, in the same words as `period()`."""
    match by:
        case "year":
            return f"{start.year}"
        case "quarter":
            return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
        case "month":
            return f"{start.year}-{start.month:02d}"
        case "week":
            iso = start.isocalendar()
            return f"{iso.year}-W{iso.week:02d}"
    return start.isoformat()
