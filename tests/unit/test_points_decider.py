"""The points decider: who may pay what, once, within caps, and never more than the balance."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from events.commands import PointsCommandRequest
from events.envelope import Actor, Role
from events.points import PointsAwarded
from projections.points_decider import decide, envelopes
from projections.points_ledger import fold
from projections.points_rules import DEFAULT_RULES, InvalidCatalog, load, parse
from tests.points import (
    CATALOG,
    GRID,
    SHANGHAI,
    Book,
    award,
    chief,
    police,
    redeem,
    supervisor,
    worker,
)

OCT = datetime(2026, 10, 5, 9, 0, tzinfo=SHANGHAI)
MINUTE, HOUR, DAY, WEEK = (timedelta(minutes=1), timedelta(hours=1), timedelta(days=1),
                           timedelta(days=7))


def test_the_shipped_catalog_names_every_rule_in_chinese_and_english() -> None:
    assert set(CATALOG.rules) == {"environment_work", "volunteer_hour", "dispute_report",
                                  "golden_idea", "village_works_labour", "promotion_video",
                                  "public_welfare", "village_rules"}
    for rule in CATALOG.rules.values():
        assert rule.zh and rule.en and rule.unit_zh and rule.unit_en
        assert 0 < rule.points_per_unit <= rule.daily_cap <= rule.monthly_cap
        assert Role.resident not in rule.award | rule.approve


@pytest.mark.parametrize(("change", "message"), [
    ("points_per_unit = 2", "points_per_unit = 0"),
    ('approve = ["grid_chief", "worker", "police"]', 'approve = ["grid_chief", "mayor"]'),
    ('award = ["grid_chief", "worker"]', 'award = ["resident"]'),
    (f"version = {CATALOG.version}\n", "version = -1\n"),
    ("monthly_cap = 20\ndaily_cap = 10", "monthly_cap = 20\ndaily_cap = 21"),
    ("monthly_cap = 20\ndaily_cap = 10", "monthly_cap = 20\ndaily_cap = 1"),
    ("monthly_cap = 20\ndaily_cap = 10\n", "monthly_cap = 20\n"),
])
def test_a_catalog_that_would_pay_wrongly_is_refused(change: str, message: str) -> None:
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    assert change in text
    with pytest.raises(InvalidCatalog):
        parse(text.replace(change, message, 1))


@pytest.mark.parametrize("quantity", [0, -3])
def test_a_zero_or_negative_award_is_invalid_and_names_the_field(quantity: int) -> None:
    with pytest.raises(ValidationError) as refused:
        PointsCommandRequest.model_validate({
            "command_id": str(uuid.uuid4()), "account_id": "hh-1", "grid": GRID,
            "occurred_at": OCT.isoformat(), "command": award("environment_work", quantity)})
    assert refused.value.errors()[0]["loc"] == ("command", "award", "quantity")
    assert "greater than 0" in refused.value.errors()[0]["msg"]


def test_points_are_never_deducted_a_negative_redemption_is_invalid_too() -> None:
    with pytest.raises(ValidationError):
        PointsCommandRequest.model_validate({
            "command_id": str(uuid.uuid4()), "account_id": "hh-1", "grid": GRID,
            "occurred_at": OCT.isoformat(), "command": redeem(-5)})


def test_a_claim_is_approved_once_and_priced_by_the_rule_of_its_version() -> None:
    book = Book()
    claim = book.claim("environment_work", 3, OCT - timedelta(days=1))
    approved, awarded = book.does(worker, {"type": "approve", "claim_id": str(claim)}, OCT)
    assert approved.event_type == "points.approved"
    assert isinstance(awarded.payload, PointsAwarded)
    assert (awarded.payload.points, awarded.payload.rule_version) == (6, CATALOG.version)
    assert awarded.payload.deed_at == OCT - timedelta(days=1)  # the deed's month counts
    assert awarded.payload.posts_at == OCT + WEEK  # 公示期 of environment work
    assert book.refuses(chief, {"type": "approve", "claim_id": str(claim)}, OCT).code == \
        "already_decided"
    assert book.refuses(chief, {"type": "reject_claim", "claim_id": str(claim),
                                "reason": "重复"}, OCT).code == "already_decided"
    assert book.account.pending_claims == []


def test_the_committee_may_approve_fewer_units_than_claimed_but_not_more() -> None:
    book = Book()
    claim = book.claim("village_works_labour", 4, OCT)
    assert book.refuses(chief, {"type": "approve", "claim_id": str(claim), "quantity": 5},
                        OCT).code == "invalid_quantity"
    _, awarded = book.does(chief, {"type": "approve", "claim_id": str(claim), "quantity": 2},
                           OCT)
    assert awarded.payload.points == 6


def test_nobody_validates_or_pays_their_own_deeds() -> None:
    book = Book()
    own = Actor(id=book.account_id, role=Role.worker)  # a grid worker's own household
    assert book.refuses(own, award("environment_work", 1), OCT).code == "self_approval"
    claim = book.claim("environment_work", 1, OCT, by=worker)  # entered by w-lina
    assert book.refuses(worker, {"type": "approve", "claim_id": str(claim)}, OCT).code == \
        "self_approval"
    book.does(police, {"type": "approve", "claim_id": str(claim)}, OCT)


def test_each_rule_says_who_may_award_or_approve_it() -> None:
    book = Book()
    assert book.refuses(worker, award("golden_idea", 1), OCT).code == "forbidden_role"
    assert book.refuses(book.resident, award("environment_work", 1), OCT).code == \
        "forbidden_role"
    assert book.refuses(chief, award("no_such_rule", 1), OCT).code == "unknown_rule"
    claim = book.claim("dispute_report", 1, OCT)  # mediators' disputes are awarded, not claimed
    assert book.refuses(chief, {"type": "approve", "claim_id": str(claim)}, OCT).code == \
        "not_claimable"
    book.does(chief, {"type": "reject_claim", "claim_id": str(claim), "reason": "由调解员上报"},
              OCT)


def test_the_same_deed_is_paid_once_per_rule() -> None:
    book = Book()
    book.does(chief, award("dispute_report", 1, "dispute-0042"), OCT)
    refused = book.refuses(chief, award("dispute_report", 1, "dispute-0042"), OCT)
    assert refused.code == "already_paid" and "dispute-0042" in refused.reason
    book.does(chief, award("golden_idea", 1, "dispute-0042"), OCT)  # another rule: another deed


def test_a_rules_monthly_cap_holds_and_the_next_month_starts_afresh() -> None:
    book = Book()
    book.does(worker, award("environment_work", 5), OCT)  # 10 of 20
    book.does(worker, award("environment_work", 3), OCT + DAY)  # 16 of 20
    refused = book.refuses(worker, award("environment_work", 3), OCT + 2 * DAY)
    assert refused.code == "monthly_cap"
    assert "at most 20" in refused.reason and "16 already" in refused.reason
    book.does(worker, award("environment_work", 2), OCT + 2 * DAY)  # exactly 20
    book.does(worker, award("environment_work", 3), datetime(2026, 11, 1, 0, 5,
                                                               tzinfo=SHANGHAI))


def test_a_rules_daily_cap_holds_whoever_pays_and_however_the_deeds_are_dated() -> None:
    book = Book()
    late = datetime(2026, 10, 5, 23, 59, tzinfo=SHANGHAI)  # 15:59 UTC
    book.does(chief, award("environment_work", 4), late - 12 * HOUR)  # 8 of the day's 10
    refused = book.refuses(worker, award("environment_work", 2), late)
    assert refused.code == "daily_cap"
    assert "at most 10 a day" in refused.reason and "8 already awarded on 2026-10-05" in \
        refused.reason
    claim = book.claim("environment_work", 2, OCT - 3 * DAY)  # a deed of another day
    assert book.refuses(police, {"type": "approve", "claim_id": str(claim)}, late).code == \
        "daily_cap"
    book.does(police, {"type": "approve", "claim_id": str(claim), "quantity": 1}, late)  # 10
    assert book.refuses(chief, award("environment_work", 1), late).code == "daily_cap"
    book.does(chief, award("golden_idea", 1), late)  # another rule has a cap of its own
    # the day is Shanghai's: two minutes later it is 16:01 on the same UTC day, another day here
    book.does(chief, award("environment_work", 1), late + 2 * MINUTE)


def test_a_voided_award_does_not_count_against_the_daily_cap() -> None:
    book = Book()
    (wrong,) = book.does(chief, award("environment_work", 5), OCT)  # the day's 10
    assert book.refuses(chief, award("environment_work", 1), OCT).code == "daily_cap"
    book.does(supervisor, {"type": "void_award", "award_id": str(wrong.event_id),
                           "reason": "登记错误"}, OCT + HOUR)
    book.does(chief, award("environment_work", 5), OCT + HOUR)


def test_points_in_review_cannot_be_spent_and_the_reason_names_the_balance() -> None:
    book = Book()
    book.does(worker, award("environment_work", 5), OCT)  # 10 points, posting in a week
    refused = book.refuses(worker, redeem(4), OCT + timedelta(days=1))
    assert refused.code == "insufficient_points"
    assert refused.reason == "the balance is 0 points; 4 asked"
    book.does(worker, redeem(4), OCT + WEEK)
    assert book.account.balance(OCT + WEEK).available == 6


def test_two_redemptions_that_together_exceed_the_balance_cannot_both_pass() -> None:
    book = Book()
    book.does(chief, award("volunteer_hour", 5), OCT)  # 10 points, posted at once
    book.does(worker, redeem(6), OCT)
    refused = book.refuses(worker, redeem(6), OCT)
    assert (refused.code, refused.reason) == ("insufficient_points",
                                               "the balance is 4 points; 6 asked")


def test_a_cancelled_pickup_returns_the_points_once() -> None:
    book = Book()
    book.does(chief, award("volunteer_hour", 5), OCT)
    (held,) = book.does(worker, redeem(8), OCT)
    assert book.account.balance(OCT).available == 2
    void = {"type": "void_redemption", "redemption_id": str(held.event_id), "reason": "未领取"}
    book.does(worker, void, OCT)
    assert book.account.balance(OCT).available == 10
    assert book.refuses(worker, void, OCT).code == "not_pending"
    assert book.refuses(worker, {"type": "post_redemption",
                                 "redemption_id": str(held.event_id)}, OCT).code == "not_pending"


def test_a_taken_redemption_posts_and_cannot_be_voided_after() -> None:
    book = Book()
    book.does(chief, award("volunteer_hour", 5), OCT)
    (held,) = book.does(worker, redeem(8), OCT)
    book.does(worker, {"type": "post_redemption", "redemption_id": str(held.event_id)}, OCT)
    balance = book.account.balance(OCT)
    assert (balance.redeemed, balance.reserved, balance.available) == (8, 0, 2)
    assert book.refuses(worker, {"type": "void_redemption", "redemption_id":
                                 str(held.event_id), "reason": "x"}, OCT).code == "not_pending"


def test_a_wrong_award_is_voided_only_inside_its_review_window() -> None:
    book = Book()
    (early,) = book.does(worker, award("environment_work", 2), OCT)
    (late,) = book.does(worker, award("environment_work", 2), OCT)
    book.does(chief, {"type": "void_award", "award_id": str(early.event_id),
                      "reason": "公示期内群众反映不实"}, OCT + timedelta(days=6))
    refused = book.refuses(chief, {"type": "void_award", "award_id": str(late.event_id),
                                   "reason": "太迟"}, OCT + WEEK)
    assert refused.code == "posted" and "never deducted" in refused.reason
    assert book.account.balance(OCT + WEEK).available == 4


def test_a_residents_redemption_is_from_their_own_account_only() -> None:
    mine, theirs = Book(), Book()
    theirs.does(chief, award("volunteer_hour", 5), OCT)
    assert theirs.refuses(mine.resident, redeem(1), OCT).code == "forbidden_role"
    theirs.does(theirs.resident, redeem(1), OCT)


def test_an_account_is_acted_on_at_its_own_place() -> None:
    book = Book()
    book.does(chief, award("volunteer_hour", 1), OCT)
    assert book.refuses(chief, award("volunteer_hour", 1), OCT,
                        grid="430382/101/003/02").code == "wrong_place"


def test_a_retried_command_derives_the_same_events() -> None:
    book = Book()
    command_id = uuid.uuid4()
    first = book.command(chief, award("volunteer_hour", 2, "act-1"), OCT, command_id=command_id)
    again = book.command(chief, award("volunteer_hour", 2, "act-1"), OCT, command_id=command_id)
    assert [e.event_id for e in envelopes(first, decide(first, book.account, CATALOG),
                                          after_seq=-1)] == \
        [e.event_id for e in envelopes(again, decide(again, book.account, CATALOG),
                                       after_seq=-1)]


def test_a_changed_catalog_prices_new_awards_and_leaves_earned_balances_alone(
    tmp_path: Path,
) -> None:
    book = Book()
    book.does(chief, award("volunteer_hour", 5), OCT)
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace(
        f"version = {CATALOG.version}\n", f"version = {CATALOG.version + 1}\n", 1)
    doubled = text.replace("points_per_unit = 2\nmonthly_cap = 60",
                           "points_per_unit = 4\nmonthly_cap = 60", 1)
    (tmp_path / "rules.toml").write_text(doubled, encoding="utf-8")
    book.catalog = load(tmp_path / "rules.toml")
    assert book.catalog.version == CATALOG.version + 1
    (later,) = book.does(chief, award("volunteer_hour", 4), OCT + DAY)
    assert (later.payload.points, later.payload.rule_version) == (16, CATALOG.version + 1)
    assert fold(book.account_id, book.events).balance(OCT + DAY).available == 10 + 16
    assert fold(book.account_id, book.events[:1]).balance(OCT + DAY).available == 10


def test_a_grid_chief_cannot_award_points_to_himself_nor_approve_his_own_claim() -> None:
    book = Book()
    himself = Actor(id=book.account_id, role=Role.grid_chief)  # the chief's own account
    for rule in ("environment_work", "dispute_report", "golden_idea"):
        assert book.refuses(himself, award(rule, 1), OCT).code == "self_approval"
    claim = book.claim("environment_work", 1, OCT, by=chief)
    assert book.refuses(chief, {"type": "approve", "claim_id": str(claim)}, OCT).code == \
        "self_approval"
    book.does(police, {"type": "approve", "claim_id": str(claim)}, OCT)  # someone else may
