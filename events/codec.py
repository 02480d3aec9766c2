"""Canonical JSON: sorted keys, no whitespace, UTF-8. The one form we hash and put on the wire."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel

#: The largest event the log carries, in canonical form: Kafka's default record limit
#: (`message.max.bytes`, 1 MiB), above the largest valid event (a patrol's 200 checkpoints and
#: 100 findings ≈ 0.7 MiB). Ingest refuses a bigger one (413); a projector parks a bigger record
#: in the dead letters instead of applying it (a producer that bypassed ingest).
MAX_EVENT_BYTES = 1024 * 1024


def canonical(value: BaseModel | dict[str, Any]) -> bytes:
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def submission_digest(event: BaseModel | dict[str, Any]) -> str:
    """What makes two copies of one event id the same event: all but the server's clock."""
    data = event.model_dump(mode="json") if isinstance(event, BaseModel) else dict(event)
    data.pop("recorded_at", None)
    return digest(canonical(data))


@dataclass(frozen=True)
class Encoded:
    """An event encoded once on the hot path: the canonical bytes the log carries, and its
    submission digest, from one `model_dump`."""

    body: bytes
    digest: str


def encode(event: BaseModel) -> Encoded:
    data = event.model_dump(mode="json")
    body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    data.pop("recorded_at", None)
    return Encoded(body, digest(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)))


def chain_hash(prev_hash: bytes, canonical_event: bytes) -> bytes:
    """The archive's hash chain link: sha256(prev_hash || canonical event)."""
    return hashlib.sha256(prev_hash + canonical_event).digest()


GENESIS = bytes(32)
