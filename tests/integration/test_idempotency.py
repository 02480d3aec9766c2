"""A phone retries: the same event id is one event; a different body under it is refused."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

from events.log import Receipt
from projections.store import Store
from services.receipts import FirstReceipt, Receipts
from tests.stack import RunningStack, an_incident


def test_an_event_posted_twice_is_answered_from_its_receipt_and_logged_once(
    stack: RunningStack, grid: str, worker: str
) -> None:
    event = an_incident(grid)
    with stack.ingest(worker) as phone:
        first = phone.post("/v1/events", json=event)
        second = phone.post("/v1/events", json=event)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()

    stack.archived("gridgov.incidents")
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
    events = [an_incident(grid) for _ in range(5)]  # interleaved: copies share group commits
    copies = [event for _ in range(10) for event in events]

    def post(event: dict[str, Any]) -> tuple[str, int, str]:
        with stack.ingest(worker) as phone:
            answer = phone.post("/v1/events", json=event)
            return event["event_id"], answer.status_code, answer.text

    with ThreadPoolExecutor(25) as pool:
        answers = list(pool.map(post, copies))
    assert [status for _, status, _ in answers] == [201] * 50
    for event in events:  # every copy answered with its event's one receipt
        assert len({body for eid, _, body in answers if eid == event["event_id"]}) == 1
    stack.archived("gridgov.incidents")
    ids = [event["event_id"] for event in events]
    assert dict(stack.sql("select event_id::text, count(*) from archive"
                          " where event_id = any(%s::uuid[]) group by 1", ids)) == \
        {eid: 1 for eid in ids}


def test_copies_of_one_id_sent_together_all_answer_the_first_receipt(
    stack: RunningStack,
) -> None:
    """Two copies in one group commit, or one arriving while the other is on its way to the
    log, must not each answer with a receipt of their own."""
    eid = uuid4()

    async def run() -> tuple[list[FirstReceipt], FirstReceipt | None]:
        store = await Store(stack.info["database_url"]).open()
        try:
            receipts = Receipts(store)
            copies = [(Receipt(str(eid), "gridgov.incidents", 0, offset), "digest")
                      for offset in (7, 8)]
            together = await receipts.record(copies)
            with receipts.sending([eid]) as firsts:
                waiting = asyncio.ensure_future(asyncio.shield(receipts.in_flight[eid]))
                firsts[eid] = together[0]
            return together, await waiting
        finally:
            await store.close()

    together, heard = asyncio.run(run())
    assert [f.receipt.offset for f in together] == [7, 7]
    assert heard == together[0]
