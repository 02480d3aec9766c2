"""Revoked users and devices: stored in PostgreSQL, recorded in the log, cached per process.

Checking a token costs no database round trip: each API process holds the whole (small)
table in memory. It re-reads it when PostgreSQL notifies a change (milliseconds after the
revoking transaction commits) and every `revocations_refresh_seconds` in case a notification
was lost with a connection; while the database is away the last copy keeps being enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime
from typing import Any, Literal

import psycopg

from events.audit import PLATFORM, TokenRevoked
from events.envelope import Actor, Event
from events.log import EventLog
from projections.store import Store

log = logging.getLogger(__name__)
CHANNEL = "gridgov_revocations"  # the migration's trigger notifies it on every change
Kind = Literal["user", "device"]


def refused(revoked: dict[tuple[str, str], float], sub: str, device: str | None,
            issued_at: float) -> bool:
    """Whether a token issued at `issued_at` to this user (on this device) is revoked."""
    ats = (revoked.get(("user", sub)), revoked.get(("device", device)) if device else None)
    return any(at is not None and issued_at <= at for at in ats)


class Revocations:
    """The revocation table as this process last read it: (kind, subject) -> revoked at."""

    def __init__(self, database_url: str, refresh_seconds: float) -> None:
        self.database_url, self.refresh_seconds = database_url, refresh_seconds
        self.revoked: dict[tuple[str, str], float] = {}
        self.loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Watch the table; returns once it has been read (no token is checked before)."""
        self._task = asyncio.create_task(self._watch())
        await asyncio.wait_for(self.loaded.wait(), 30)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.database_url, autocommit=True) as conn:
                    await conn.execute(f"listen {CHANNEL}")
                    while True:  # listening first, so a change during the read is not missed
                        cur = await conn.execute(
                            "select kind, subject, revoked_at from token_revocations")
                        self.revoked = {(k, s): at.timestamp()
                                        for k, s, at in await cur.fetchall()}
                        self.loaded.set()
                        async for _ in conn.notifies(timeout=self.refresh_seconds,
                                                     stop_after=1):
                            pass
            except psycopg.Error as exc:  # PostgreSQL restarted: keep the last copy, re-read
                log.warning("revocations lost their connection (%s); reconnecting", exc)
                await asyncio.sleep(1.0)


async def revoke(database_url: str, bootstrap: str, kind: Kind, subject: str, *,
                 by: Actor, reason: str, now: datetime) -> Event[TokenRevoked]:
    """Refuse every token of this user or device issued until `now`, then say so in the log.
    The row comes first: if the log is unavailable the revocation already holds, and
    revoking again records it (a later `revoked_at` only widens it)."""
    store = await Store(database_url, max_size=1).open()
    try:
        async with store.transaction() as cur:
            await cur.execute(
                "insert into token_revocations (kind, subject, revoked_at, revoked_by, reason)"
                " values (%s, %s, %s, %s, %s) on conflict (kind, subject) do update set"
                " revoked_at = greatest(token_revocations.revoked_at, excluded.revoked_at),"
                " revoked_by = excluded.revoked_by, reason = excluded.reason",
                [kind, subject, now, by.id, reason])
    finally:
        await store.close()
    event = Event[TokenRevoked](
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"gridgov:revoked:{kind}:{subject}:{now}"),
        event_type=TokenRevoked.event_type, schema_version=TokenRevoked.schema_version,
        occurred_at=now, recorded_at=now, actor=by, grid=PLATFORM,
        aggregate_id=f"{kind}:{subject}", aggregate_seq=int(now.timestamp()),
        payload=TokenRevoked(kind=kind, subject=subject, revoked_at=now, reason=reason))
    await record(bootstrap, event)
    return event


async def record(bootstrap: str, event: Event[Any]) -> None:
    """Put an administrator's act on the audit topic."""
    event_log = EventLog(bootstrap, client_id="gridgov-admin")
    try:
        await event_log.append_many([event])
    finally:
        event_log.close()
