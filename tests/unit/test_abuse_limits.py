"""Token buckets per subject, the revocation rule, and the deadline for a request's body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from services import errors
from services.errors import TooManyRequests
from services.limits import BodyDeadline, TokenBuckets
from services.revocations import refused


def test_a_subject_gets_its_burst_then_waits_for_the_refill() -> None:
    buckets = TokenBuckets(rate=2, burst=3)
    for _ in range(3):
        buckets.take("w-1", now=100.0)
    with pytest.raises(TooManyRequests) as refusal:
        buckets.take("w-1", now=100.0)
    assert refusal.value.retry_after == 1 and refusal.value.status == 429
    buckets.take("w-2", now=100.0)  # another subject has a bucket of its own
    buckets.take("w-1", now=100.5)  # half a second refills one request
    with pytest.raises(TooManyRequests):
        buckets.take("w-1", now=100.5)


def test_a_slow_refill_says_how_long_to_wait() -> None:
    buckets = TokenBuckets(rate=0.1, burst=1)
    buckets.take("w-1", now=0.0)
    with pytest.raises(TooManyRequests) as refusal:
        buckets.take("w-1", now=2.0)
    assert refusal.value.retry_after == 8


def test_buckets_forget_the_refilled_subjects_when_they_get_too_many() -> None:
    buckets = TokenBuckets(rate=1, burst=2, most_subjects=2)
    buckets.take("a", now=0.0)
    buckets.take("b", now=9.0)
    buckets.take("c", now=9.0)  # "a" has refilled by now: forgotten
    assert set(buckets.buckets) == {"b", "c"}


REVOKED = {("user", "w-1"): 1000.0, ("device", "phone-7"): 2000.0}


@pytest.mark.parametrize(("sub", "device", "issued_at", "out"), [
    ("w-1", None, 999, True),  # the user's token from before the revocation
    ("w-1", None, 1000, True),  # from the same second
    ("w-1", None, 1001, False),  # issued after: the revocation does not reach it
    ("w-2", "phone-7", 1500, True),  # anyone's token on the lost phone
    ("w-2", "phone-8", 1500, False),
    ("w-2", None, 0, False),
])
def test_a_revocation_refuses_the_tokens_issued_until_then(
        sub: str, device: str | None, issued_at: int, out: bool) -> None:
    assert refused(REVOKED, sub, device, issued_at) is out


def body_app(seconds: float) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.add_middleware(BodyDeadline, seconds=seconds)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


def test_a_body_trickled_past_the_deadline_is_refused_with_408() -> None:
    async def trickle() -> tuple[httpx.Response, httpx.Response]:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"{"
            await asyncio.sleep(1)
            yield b"}"

        transport = httpx.ASGITransport(app=body_app(0.2))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            slow = await client.post("/echo", content=chunks())
            quick = await client.post("/echo", content=b"{}")
        return slow, quick

    slow, quick = asyncio.run(trickle())
    assert slow.status_code == 408 and slow.json()["errors"][0]["field"] == "body"
    assert quick.status_code == 200 and quick.json() == {"bytes": 2}
