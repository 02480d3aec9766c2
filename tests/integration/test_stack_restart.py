"""The embedded broker keeps its log in memory: a restart re-seeds it from the archive."""

from __future__ import annotations

from pathlib import Path

import psutil

from events.envelope import Role
from events.log import consumer, end_offsets, partitions_of
from events.topics import EVENT_TOPICS
from tests.stack import RunningStack, a_patrol, a_place, an_incident, wait_until


def test_a_restarted_stack_keeps_every_archived_event_readable(tmp_path: Path) -> None:
    grid = a_place()
    stack = RunningStack(tmp_path / "home").start()
    try:
        worker = stack.token(Role.worker, grid)
        events = [an_incident(grid) for _ in range(30)] + [a_patrol(grid) for _ in range(20)]
        answer = stack.ingest(worker).post("/v1/events/batch", json={"events": events})
        assert answer.json()["accepted"] == 50
        wait_until(lambda: stack.archived_under(grid.rsplit("/", 1)[0]) == 50,
                   what="50 archived events")
    finally:
        stack.stop()
    assert not (tmp_path / "home" / "stack.json").exists()
    assert leftovers(tmp_path / "home", stack) == []

    stack.start()
    try:
        reader = stack.query(stack.token(Role.supervisor, grid.split("/")[0]))
        for event in events:
            assert reader.get(f"/v1/events/{event['event_id']}").status_code == 200

        kafka = consumer(stack.info["kafka_bootstrap"])
        ends = end_offsets(kafka, partitions_of(kafka, [t.name for t in EVENT_TOPICS]))
        kafka.close()
        assert sum(ends.values()) == 50  # the log holds the archive again, nothing more

        # offsets were remapped to the new log: a new event is archived once, old ones not again
        late = an_incident(grid)
        assert stack.ingest(worker).post("/v1/events", json=late).status_code == 201
        wait_until(lambda: stack.archived_under(grid.rsplit("/", 1)[0]) == 51,
                   what="the new event archived")
        # a re-seeded record read again would sit on any partition, not only the new one's
        stack.archived(*(t.name for t in EVENT_TOPICS))
        assert stack.sql("select count(*) from archive_duplicates")[0][0] == 0
    finally:
        stack.stop()
    assert leftovers(tmp_path / "home", stack) == []


def leftovers(home: Path, stack: RunningStack) -> list[str]:
    """Processes of this stack still alive after Ctrl-C: PostgreSQL, broker, our children."""
    ports = {str(p) for p in stack.ports.values()}
    alive = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(home) in cmdline or ("tansu" in cmdline and any(p in cmdline for p in ports)):
            alive.append(cmdline)
    return alive
