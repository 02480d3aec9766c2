"""Abuse limits at the edge: a request rate per token subject, and a deadline for a body.

Both run on the event loop of one process, so they need no lock: the buckets are a dict the
loop alone touches. Each ingest or query process keeps its own buckets (N processes allow N
times the rate); that bounds a runaway phone, not a distributed attack, which is the
proxy's to stop.
"""

from __future__ import annotations

import asyncio
import math

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import SlowRequest, TooManyRequests


class TokenBuckets:
    """One token bucket per subject: `burst` requests at once, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int, most_subjects: int = 100_000) -> None:
        self.rate, self.burst, self.most_subjects = rate, float(burst), most_subjects
        self.buckets: dict[str, tuple[float, float]] = {}  # subject -> (tokens, at)

    def take(self, subject: str, now: float) -> None:
        """Spend one request of `subject`'s; refused with the seconds until the next one."""
        tokens, at = self.buckets.get(subject, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            raise TooManyRequests("authorization", "too many requests for this token",
                                  retry_after=math.ceil((1 - tokens) / self.rate))
        if subject not in self.buckets and len(self.buckets) >= self.most_subjects:
            self._forget_full(now)
        self.buckets[subject] = (tokens - 1, now)

    def _forget_full(self, now: float) -> None:
        """A bucket that has refilled says nothing a new one would not: drop those."""
        self.buckets = {s: (t, at) for s, (t, at) in self.buckets.items()
                        if t + (now - at) * self.rate < self.burst}


class BodyDeadline:
    """ASGI middleware: a request's body must be in within `seconds` of its start (408),
    so a client trickling bytes cannot hold a connection and a worker's memory for long.
    Once the body is in, reads (an event stream waiting for the disconnect) pass untimed."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        body_in = False

        async def timed() -> Message:
            nonlocal body_in
            if body_in:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise SlowRequest("body", f"not received within {self.seconds:g} s") from None
            body_in = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed, send)
