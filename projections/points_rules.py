"""The points rules catalog: what a deed is worth, who may pay it, how much a day and a month
at most.

Loaded once when the points decider starts. Only decisions read it: the ledger takes the points
from each award, so changing the catalog never changes a balance already earned.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from events.envelope import Role

DEFAULT_RULES = Path(__file__).parent / "points_rules.toml"


@dataclass(frozen=True)
class Rule:
    code: str
    zh: str
    en: str
    unit_zh: str
    unit_en: str
    points_per_unit: int
    monthly_cap: int  # per account, per calendar month of the deed
    #: per account, per Asia/Shanghai day on which the points are awarded (the server's clock,
    #: which no awarder sets): what one sitting can pay, however the deeds are dated
    daily_cap: int
    review: timedelta  # 公示期: an award can be voided until it has run, then it posts
    claimable: bool  # may a household claim it itself, or is it only awarded
    award: frozenset[Role]  # who may award it directly
    approve: frozenset[Role]  # who may approve (or reject) a claim of it


@dataclass(frozen=True)
class Catalog:
    version: int
    rules: Mapping[str, Rule]

    def get(self, code: str) -> Rule | None:
        return self.rules.get(code)


class InvalidCatalog(ValueError):
    pass


def _positive(data: Mapping[str, object], key: str, where: str, *, zero: bool = False) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if zero else 1):
        raise InvalidCatalog(f"{where}.{key} must be a {'non-negative' if zero else 'positive'}"
                             " integer")
    return value


def _roles(data: Mapping[str, object], key: str, where: str) -> frozenset[Role]:
    names = data.get(key, [])
    if not isinstance(names, list) or not all(n in Role.__members__ for n in names):
        raise InvalidCatalog(f"{where}.{key} must list roles of {sorted(Role.__members__)}")
    roles = frozenset(Role(n) for n in names)
    if roles & {Role.resident, Role.system, Role.auditor}:
        raise InvalidCatalog(f"{where}.{key}: residents, auditors and the system never pay points")
    return roles


def parse(text: str) -> Catalog:
    data = tomllib.loads(text)
    version = _positive(data, "version", "catalog")
    rules = {}
    for code, spec in data.get("rules", {}).items():
        where = f"rules.{code}"
        if not re.fullmatch(r"[a-z][a-z0-9_]{1,39}", code):
            raise InvalidCatalog(f"{where}: a rule code is lower_snake_case, 2-40 characters")
        labels = {k: spec.get(k) for k in ("zh", "en", "unit_zh", "unit_en")}
        if not all(isinstance(v, str) and v for v in labels.values()):
            raise InvalidCatalog(f"{where} needs zh, en, unit_zh and unit_en labels")
        rule = Rule(
            code=code, zh=spec["zh"], en=spec["en"], unit_zh=spec["unit_zh"],
            unit_en=spec["unit_en"], points_per_unit=_positive(spec, "points_per_unit", where),
            monthly_cap=_positive(spec, "monthly_cap", where),
            daily_cap=_positive(spec, "daily_cap", where),
            review=timedelta(days=_positive(spec, "review_days", where, zero=True)),
            claimable=bool(spec.get("claimable", False)),
            award=_roles(spec, "award", where), approve=_roles(spec, "approve", where),
        )
        if rule.monthly_cap < rule.points_per_unit:
            raise InvalidCatalog(f"{where}: the monthly cap is below one unit's points")
        if not rule.points_per_unit <= rule.daily_cap <= rule.monthly_cap:
            raise InvalidCatalog(f"{where}: the daily cap must hold one unit's points and not"
                                 " exceed the monthly cap")
        if rule.claimable and not rule.approve:
            raise InvalidCatalog(f"{where}: a claimable rule needs roles that approve")
        rules[code] = rule
    if not rules:
        raise InvalidCatalog("the catalog has no rules")
    return Catalog(version=version, rules=rules)


def load(path: Path = DEFAULT_RULES) -> Catalog:
    return parse(path.read_text(encoding="utf-8"))
