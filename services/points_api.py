"""Points reads (the query service): an account's balance with the events behind it, a
compound's monthly ranking, a place's half-year awards and participation.

A published ranking is answered as it was published (a frozen fact, with its watermark); an
unpublished one is computed now by the same functions that publish it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from events.envelope import GRID_PATTERN, PLACE_PATTERN, Event, grid_path, place_path
from projections import points_ranking as ranking
from projections.points_ledger import (
    Account,
    account_of,
    credits_under,
    joined_under,
    published_rankings,
    watermarks,
)
from projections.store import Store
from services.auth import Caller, Principal
from services.errors import Invalid, NotFound, json_response

router = APIRouter(tags=["points"])

MONTH = r"^(19|20|21)\d{2}-(0[1-9]|1[0-2])$"
HALF = r"^(19|20|21)\d{2}H[12]$"


def _place(value: str, field: str, caller: Principal, *, grid: bool = False) -> str:
    try:
        (grid_path if grid else place_path)(value)
    except ValueError as exc:
        raise Invalid(field, str(exc)) from None
    caller.require(value, field)
    return value


def account_json(account: Account, events: list[Event[Any]], now: datetime) -> dict[str, Any]:
    balance = account.balance(now)
    return {
        "account_id": account.account_id, "grid": account.grid, "as_of": now,
        "claims_pending": len(account.pending_claims), "awarded": balance.awarded,
        "in_review": balance.in_review, "posted": balance.posted, "redeemed": balance.redeemed,
        "reserved": balance.reserved, "balance": balance.available,
        "transfers": [
            {"transfer_id": str(t.transfer_id), "kind": t.kind, "debit": t.debit,
             "credit": t.credit, "amount": t.amount, "status": t.status(now), "rule": t.rule,
             "rule_version": t.rule_version, "source_id": t.source_id, "deed_at": t.deed_at,
             "posts_at": t.posts_at, "item": t.item}
            for t in sorted(account.transfers.values(), key=lambda t: t.seq)],
        "claims": [{"claim_id": str(c.claim_id), "rule": c.rule, "quantity": c.quantity,
                    "occurred_at": c.occurred_at,
                    "verdict": account.verdicts.get(c.claim_id, "pending")}
                   for c in sorted(account.claims.values(), key=lambda c: c.occurred_at)],
        "events": [e.model_dump(mode="json") for e in events],
    }


@router.get("/v1/points/accounts/{account_id}")
async def get_account(
    account_id: Annotated[str, Path(max_length=64, pattern=r"^[0-9A-Za-z_.-]+$")],
    caller: Caller, request: Request,
) -> Response:
    """The balance (posted awards less redeemed and reserved), its parts, and its events."""
    async with request.app.state.store.cursor() as cur:
        account, events = await account_of(cur, account_id)
    if not events or account.grid is None or not caller.covers(account.grid):
        raise NotFound("account_id", "no such account in your scope")
    return json_response(account_json(account, events, datetime.now(UTC)))


async def monthly_ranking(store: Store, compound: str, month: str) -> dict[str, Any]:
    async with store.cursor() as cur:
        published = await published_rankings(cur, compound)
        if month in published:
            return {"compound": compound, "month": month, "published": True,
                    **published[month]}
        credits, _ = await credits_under(cur, compound)
    table = ranking.standings(credits, watermarks(published, half=False), month)
    return {"compound": compound, "month": month, "published": False,
            "ranks": [r.model_dump() for r in table[:ranking.TOP]],
            "standings": [r.model_dump() for r in table], "tie_break": ranking.TIE_BREAK}


@router.get("/v1/points/rankings")
async def get_ranking(
    caller: Caller, request: Request,
    compound: Annotated[str, Query(max_length=100, pattern=GRID_PATTERN)],
    month: Annotated[str, Query(pattern=MONTH)],
) -> Response:
    """A compound's monthly top three: as published (公示), or as it stands now."""
    return json_response(await monthly_ranking(
        request.app.state.store, _place(compound, "compound", caller, grid=True), month))


async def half_year_awards(store: Store, place: str, half: str) -> dict[str, Any]:
    async with store.cursor() as cur:
        published = await published_rankings(cur, place)
        credits, _ = await credits_under(cur, place)
        joined = await joined_under(cur, place)
    marks = watermarks(published, half=True)
    table = ranking.standings(credits, marks, half)
    progress = ranking.progress(credits, marks, half)
    return {
        "place": place, "half": half,
        "winner": table[0].model_dump() if table else None,
        "ranks": [r.model_dump() for r in table[:ranking.TOP]],
        "progress": progress.model_dump() if progress else None,
        "tie_break": ranking.TIE_BREAK, "progress_tie_break": ranking.PROGRESS_TIE_BREAK,
        "published": published.get(half),
        "participation": [_participation(ranking.participation(joined, credits, month))
                          for month in ranking.months_of(half)],
    }


def _participation(p: ranking.Participation) -> dict[str, Any]:
    share = p.share
    return {"month": p.month, "households": p.households, "with_points": p.with_points,
            "share": f"{share.numerator}/{share.denominator}" if share is not None else None,
            "percent": round(float(share) * 100, 1) if share is not None else None}


@router.get("/v1/points/awards")
async def get_awards(
    caller: Caller, request: Request,
    place: Annotated[str, Query(max_length=100, pattern=PLACE_PATTERN)],
    half: Annotated[str, Query(pattern=HALF)],
) -> Response:
    """A place's half year: winner, progress award, and each month's participation."""
    return json_response(await half_year_awards(
        request.app.state.store, _place(place, "place", caller), half))
