"""The fault-injection oracle: what was acknowledged, what the log holds, what each read model
applied, and whether each read model is the function of the log a rebuild says it is.

Anomalies carry the names of Jepsen's queue and Kafka checkers:
- `lost-write`: an event answered 201 (or acknowledged by the broker) that the log lacks;
- `unseen`: an event the log holds (under the run's place) that a projection never applied;
- `duplicate`: an event a projection applied more than once;
- `unexpected`: an event a projection applied that the log does not hold;
- `digest-mismatch` (ours): a read model's table differs from its rebuild from offset 0.
Events whose answer never arrived (the process died mid-request) are `indeterminate`: the log
may or may not hold them, and both are correct; if it does, every projection must apply them.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import psycopg
from psycopg import sql

from events.log import consumer, end_offsets, partitions_of
from projections.replay import replay
from projections.runner import Projection
from tests.stack import RunningStack


@dataclass(frozen=True)
class Anomaly:
    name: str
    where: str
    event_ids: tuple[str, ...]

    def __str__(self) -> str:
        shown = ", ".join(self.event_ids[:3])
        return f"{self.name} in {self.where}: {len(self.event_ids)} ({shown}…)"


@dataclass
class Oracle:
    """Records every answer a load generator got, under one place (a county of its own)."""

    place: str
    acked: set[str] = field(default_factory=set)
    indeterminate: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def post_batch(self, client: httpx.Client, events: Sequence[dict[str, Any]]) -> int | None:
        """POST /v1/events/batch and record each item's answer; the HTTP status, or None."""
        ids = [str(e["event_id"]) for e in events]
        try:
            answer = client.post("/v1/events/batch", json={"events": list(events)})
        except httpx.HTTPError:
            self.unknown(ids)
            return None
        if answer.status_code != 200:
            (self.unknown if answer.status_code >= 500 else self.refuse)(ids)
            return answer.status_code
        for result in answer.json()["results"]:
            event_id = ids[result["index"]]
            if result["status"] == 201:
                self.ack([event_id])
            else:
                (self.unknown if result["status"] >= 500 else self.refuse)([event_id])
        return 200

    def ack(self, ids: Iterable[str]) -> None:
        with self._lock:
            self.acked.update(ids)
            self.indeterminate.difference_update(self.acked)

    def unknown(self, ids: Iterable[str]) -> None:
        with self._lock:
            self.indeterminate.update(set(ids) - self.acked)

    def refuse(self, ids: Iterable[str]) -> None:
        with self._lock:
            self.refused.update(ids)

    # -- what the log and the read models hold ----------------------------------------------
    def log_ids(self, stack: RunningStack, topics: tuple[str, ...]) -> Counter[str]:
        """Every event id under the place, as often as the log holds it (retries included)."""
        kafka = consumer(stack.info["kafka_bootstrap"])
        found: Counter[str] = Counter()
        try:
            tps = partitions_of(kafka, topics)
            ends = end_offsets(kafka, tps)
            kafka.assign(tps)
            kafka.seek_to_beginning(*tps)
            left = {tp for tp in tps if ends[tp] > 0}
            while left:
                for tp, records in kafka.poll(timeout_ms=500).items():
                    for record in records:
                        if record.offset >= ends[tp]:
                            continue
                        try:
                            body = orjson.loads(record.value)
                        except orjson.JSONDecodeError:
                            continue  # poison: the dead-letter scenario checks it
                        if isinstance(body, dict) and str(body.get("grid", "")).startswith(
                                self.place + "/"):
                            found[str(body.get("event_id"))] += 1
                    if kafka.position(tp) >= ends[tp]:
                        left.discard(tp)
                        kafka.pause(tp)
        finally:
            kafka.close()
        return found

    def check(self, stack: RunningStack, applied: dict[str, Counter[str]],
              logged: Counter[str]) -> list[Anomaly]:
        """acked ⊆ log = applied by each projection, each once."""
        anomalies = []
        lost = sorted(self.acked - set(logged))
        if lost:
            anomalies.append(Anomaly("lost-write", "log", tuple(lost)))
        for projection, ids in applied.items():
            for name, found in (
                ("unseen", set(logged) - set(ids)),
                ("unexpected", set(ids) - set(logged)),
                ("duplicate", {i for i, n in ids.items() if n > 1}),
            ):
                if found:
                    anomalies.append(Anomaly(name, projection, tuple(sorted(found))))
        return anomalies


def archived(stack: RunningStack, place: str) -> Counter[str]:
    return Counter(r[0] for r in stack.sql(
        "select event_id::text from archive where place like %s", place + "/%"))


def in_timelines(stack: RunningStack, ids: Iterable[str]) -> Counter[str]:
    """Events the chain projection applied; a patrol appears once per incident it found, so
    duplicates are counted per (incident, event)."""
    rows = stack.sql("select incident_id, event_id::text from incident_timeline"
                     " where event_id = any(%s::uuid[])", list(ids))
    per_pair = Counter(rows)
    found: Counter[str] = Counter()
    for (_, event_id), n in per_pair.items():
        found[event_id] = max(found[event_id], n)
    return found


# -- digests ------------------------------------------------------------------------------
def digests(conn: psycopg.Connection[Any], projection: Projection,
            schema: str = "public") -> dict[str, str]:
    """Per table, sha256 of its rows (the projection's own column list, so no wall-clock
    column), in a total order."""
    out = {}
    for table, columns in projection.tables.items():
        query = sql.SQL("select r::text from (select {c} from {s}.{t}) r order by 1").format(
            c=sql.SQL(columns), s=sql.Identifier(schema), t=sql.Identifier(table))
        sha = hashlib.sha256()
        for (text,) in conn.execute(query):
            sha.update(text.encode())
            sha.update(b"\n")
        out[table] = sha.hexdigest()
    return out


def live_and_rebuilt(stack: RunningStack, projection: Projection, shadow: str,
                     fresh: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """The live read model's digests and those of a rebuild from offset 0 (not `fresh`: on
    from where `shadow`'s rebuild stopped) up to the same watermark, taken while the live
    projector is held there (its offsets locked)."""
    url = stack.info["database_url"]
    with psycopg.connect(url) as conn, conn.transaction():
        rows = conn.execute("select topic, partition, next_offset from projection_offsets"
                            " where projection = %s for update", [projection.name]).fetchall()
        watermark = {(t, p): o for t, p, o in rows}
        asyncio.run(replay(projection, bootstrap=stack.info["kafka_bootstrap"],
                           database_url=url, schema=shadow, until=watermark, fresh=fresh))
        return digests(conn, projection), digests(conn, projection, shadow)


def mismatches(stack: RunningStack, projection: Projection, shadow: str) -> list[Anomaly]:
    live, rebuilt = live_and_rebuilt(stack, projection, shadow)
    return [Anomaly("digest-mismatch", f"{projection.name}.{table}", (live[table],
                                                                       rebuilt[table]))
            for table in live if live[table] != rebuilt[table]]
