"""Records no app of ours wrote: parked in the dead-letter topic, and the partition moves on."""

from __future__ import annotations

import uuid

from kafka import KafkaProducer

from events.log import consumer, partitions_of
from events.topics import DEAD_LETTERS, INCIDENTS
from tests.stack import RunningStack, an_incident, wait_until


def test_poison_records_land_in_the_dead_letter_topic_and_later_events_are_archived(
    stack: RunningStack, grid: str, worker: str
) -> None:
    marker = uuid.uuid4().hex
    key = f"poison-{marker}".encode()  # one key: same partition as the good event after it
    producer = KafkaProducer(bootstrap_servers=stack.info["kafka_bootstrap"], acks="all")
    poison = [
        f"not json {marker}".encode(),
        f'{{"event_type": "incident.teleported", "marker": "{marker}"}}'.encode(),
        b"\xff\xfe" + marker.encode(),
    ]
    for value in poison:
        producer.send(INCIDENTS.name, key=key, value=value).get(timeout=10)
    producer.close()
    good = an_incident(grid, aggregate_id=key.decode())
    assert stack.ingest(worker).post("/v1/events", json=good).status_code == 201

    wait_until(lambda: stack.sql("select 1 from archive where event_id = %s", good["event_id"]),
               what="the good event after the poison archived")

    dead = consumer(stack.info["kafka_bootstrap"])
    dead.assign(partitions_of(dead, [DEAD_LETTERS.name]))
    dead.seek_to_beginning()
    parked: list[tuple[bytes, dict[str, bytes]]] = []

    def all_parked() -> bool:
        for records in dead.poll(timeout_ms=200).values():
            parked.extend((r.value, dict(r.headers)) for r in records
                          if marker.encode() in r.value)
        return len(parked) >= 3

    wait_until(all_parked, what="three dead letters")
    dead.close()
    assert sorted(v for v, _ in parked) == sorted(poison)  # the original bytes, untouched
    for _, headers in parked:
        assert headers["dlq.topic"] == INCIDENTS.name.encode()
        assert headers["dlq.reason"]
        assert int(headers["dlq.offset"]) >= 0
