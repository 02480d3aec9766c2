"""A phone retries: the same event id is one event; a different body under it is refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.stack import RunningStack, an_incident, wait_until


def test_an_event_posted_twice_is_answered_from_its_receipt_and_logged_once(
    stack: RunningStack, grid: str, worker: str
) -> None:
    event = an_incident(grid)
    with stack.ingest(worker) as phone:
        first = phone.post("/v1/events", json=event)
        second = phone.post("/v1/events", json=event)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()

    wait_until(lambda: stack.caught_up("archive", "gridgov.incidents"),
               what="the archive to hold the log")
    assert stack.sql("select count(*) from archive where event_id = %s",
                     event["event_id"])[0][0] == 1
    assert stack.sql("select count(*) from archive_duplicates where event_id = %s",
                     event["event_id"])[0][0] == 0  # the retry never reached the log


def test_the_same_event_id_with_a_different_body_is_refused(
    stack: RunningStack, grid: str, worker: str
) -> None:
    event = an_incident(grid)
    with stack.ingest(worker) as phone:
        assert phone.post("/v1/events", json=event).status_code == 201
        changed = {**event, "payload": {**event["payload"], "title": "另一件事"}}
        answer = phone.post("/v1/events", json=changed)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "event_id"


def test_ten_concurrent_copies_of_one_event_archive_exactly_one(
    stack: RunningStack, grid: str, worker: str
) -> None:
    event = an_incident(grid)

    def post(_: int) -> tuple[int, str]:
        with stack.ingest(worker) as phone:
            answer = phone.post("/v1/events", json=event)
            return answer.status_code, answer.text

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, range(10)))
    assert [status for status, _ in answers] == [201] * 10
    assert len({body for _, body in answers}) == 1  # every copy answered with one receipt
    wait_until(lambda: stack.caught_up("archive", "gridgov.incidents"),
               what="the archive to hold the log")
    assert stack.sql("select count(*) from archive where event_id = %s",
                     event["event_id"])[0][0] == 1
