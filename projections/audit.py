"""What auditors ask of the archive: a matter's whole history, and proof nothing was changed.

`verify` walks each partition's hash chain and names every edited, deleted or inserted row by
position; `digest` signs the chain heads and counts, so a verify months later proves nothing
before that day changed (an attacker who rewrites the archive cannot re-sign the digest).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from events.codec import GENESIS
from projections.archive import Head, verify
from projections.store import in_schema

HISTORY = (
    "select event_id, event_type, schema_version, actor_id, actor_role, occurred_at,"
    " recorded_at, topic, partition, log_offset, position, hash, body from archive"
    " where aggregate_id = %s order by aggregate_seq, recorded_at, seq"
)


def history_row(row: tuple[Any, ...]) -> dict[str, Any]:
    (event_id, event_type, version, actor_id, actor_role, occurred_at, recorded_at, topic,
     partition, offset, position, link, body) = row
    return {
        "event_id": str(event_id), "event_type": event_type, "schema_version": version,
        "actor": {"id": actor_id, "role": actor_role},
        "occurred_at": occurred_at.isoformat(), "recorded_at": recorded_at.isoformat(),
        "log": {"topic": topic, "partition": partition, "offset": offset},
        "archive": {"position": position, "hash": bytes(link).hex()},
        "event": orjson.loads(body),
    }


@dataclass(frozen=True)
class Break:
    topic: str
    partition: int
    problem: str


def verify_archive(database_url: str, *, first: int = 0, last: int | None = None,
                   topic: str | None = None, partition: int | None = None,
                   schema: str | None = None) -> list[Break]:
    """Walk every chain (or one, or positions first..last) against the recorded heads, all in
    one snapshot: the archive keeps archiving while it is walked, and a batch committed
    between the heads and the rows read would look like rows past their head."""
    breaks = []
    with psycopg.connect(database_url, **in_schema(schema)) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        heads = conn.execute("select topic, partition, position, hash from archive_heads"
                             " where (%s::text is null or topic = %s)"
                             " and (%s::int is null or partition = %s) order by 1, 2",
                             [topic, topic, partition, partition]).fetchall()
        for t, p, head_position, head_hash in heads:
            start = Head(0, GENESIS)
            if first > 0:  # a partial check starts from the stored link before `first`
                before = conn.execute("select hash from archive where topic = %s and"
                                      " partition = %s and position = %s",
                                      [t, p, first - 1]).fetchone()
                start = Head(first, bytes(before[0]) if before else b"")
            rows = conn.execute(
                "select position, body, prev_hash, hash from archive where topic = %s and"
                " partition = %s and position >= %s and (%s::bigint is null or position <= %s)"
                " order by position", [t, p, first, last, last]).fetchall()
            end = Head(head_position + 1, bytes(head_hash)) if last is None else None
            chain = [(pos, bytes(b), bytes(ph), bytes(h)) for pos, b, ph, h in rows]
            breaks += [Break(t, p, problem) for problem in verify(chain, start, end)]
    return breaks


def _signature(key: str, heads: list[dict[str, Any]]) -> str:
    message = orjson.dumps(heads, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def digest(database_url: str, key: str) -> dict[str, Any]:
    """The chain heads and counts now (one snapshot), signed: export it daily and keep it
    elsewhere."""
    with psycopg.connect(database_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        heads = [{"topic": t, "partition": p, "position": int(pos), "hash": bytes(h).hex()}
                 for t, p, pos, h in conn.execute(
                     "select topic, partition, position, hash from archive_heads order by 1, 2")]
        count = conn.execute("select count(*) from archive").fetchone()
    return {"heads": heads, "events": int(count[0]) if count else 0,
            "signature": _signature(key, heads)}


def check_digest(database_url: str, signed: dict[str, Any], key: str) -> list[Break]:
    """Prove the archive up to a digest's heads is unchanged since it was signed."""
    if not hmac.compare_digest(_signature(key, signed["heads"]), signed["signature"]):
        return [Break("-", -1, "the digest's signature does not match: it was altered")]
    breaks = []
    for head in signed["heads"]:
        breaks += verify_archive(database_url, topic=head["topic"],
                                 partition=head["partition"], last=head["position"])
        with psycopg.connect(database_url) as conn:
            found = conn.execute("select hash from archive where topic = %s and partition = %s"
                                 " and position = %s",
                                 [head["topic"], head["partition"], head["position"]]).fetchone()
        if found is None or bytes(found[0]).hex() != head["hash"]:
            breaks.append(Break(head["topic"], head["partition"],
                                f"position {head['position']}: not the head the digest signed"))
    return breaks
