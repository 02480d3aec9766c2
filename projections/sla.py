"""SLA arithmetic on a working calendar: pure functions of events, rules and a given time."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from events.incident import Category, Level

DEFAULT_RULES = Path(__file__).parent / "sla.toml"
LOCAL = ZoneInfo("Asia/Shanghai")  # days are counted on the grid's own calendar


@dataclass(frozen=True)
class Calendar:
    weekend: frozenset[int]
    holidays: frozenset[date]
    workdays: frozenset[date]  # weekend days worked instead of a holiday (调休)

    def is_working(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.isoweekday() not in self.weekend and day not in self.holidays


@dataclass(frozen=True)
class Rules:
    deadline_days: dict[str, dict[str, int]]
    ladder: tuple[Level, ...]
    grace: timedelta
    calendar: Calendar

    def deadline(self, category: Category, level: Level, start: datetime) -> datetime:
        """`start` plus the rule's working days: each non-working day in between is skipped."""
        days = self.deadline_days[category.value][level.value]
        local = start.astimezone(LOCAL)
        while days > 0:
            local += timedelta(days=1)
            if self.calendar.is_working(local.date()):
                days -= 1
        return local

    def above(self, level: Level) -> Level | None:
        at = self.ladder.index(level)
        return self.ladder[at + 1] if at + 1 < len(self.ladder) else None


def load(path: Path = DEFAULT_RULES) -> Rules:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    calendar = data["calendar"]
    return Rules(
        deadline_days=data["deadline_days"],
        ladder=tuple(Level(level) for level in data["ladder"]),
        grace=timedelta(seconds=data["grace_seconds"]),
        calendar=Calendar(
            weekend=frozenset(calendar["weekend"]),
            holidays=frozenset(date.fromisoformat(d) for d in calendar["holidays"]),
            workdays=frozenset(date.fromisoformat(d) for d in calendar["workdays"]),
        ),
    )
