"""The archive's hash chain: built once per event, and any edit, deletion or insertion shows."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from events.catalog import CATALOG, event_from_dict, example_event
from events.codec import GENESIS
from events.log import Record
from projections.archive import Head, chain, verify
from projections.runner import Delivery


def delivery(offset: int, event_id: uuid.UUID, partition: int = 0, title: str = "路灯损坏"
             ) -> Delivery:
    data: dict[str, Any] = example_event(CATALOG[("incident.reported", 1)])
    data["event_id"] = str(event_id)
    data["payload"] = {**data["payload"], "title": title}
    return Delivery(Record("gridgov.incidents", partition, offset, None, b""),
                    event_from_dict(data))


def rows_of(archived: list[Any]) -> list[tuple[int, bytes, bytes, bytes]]:
    return [(a.position, a.body, a.prev_hash, a.hash) for a in archived]


ids = st.lists(st.integers(0, 30), min_size=1, max_size=40)


@given(ids)
def test_each_event_id_is_archived_once_and_the_rest_are_duplicates(picks: list[int]) -> None:
    deliveries = [delivery(i, uuid.UUID(int=p)) for i, p in enumerate(picks)]
    archived, duplicates, heads = chain({}, deliveries, {})
    assert len(archived) == len(set(picks))
    assert len(duplicates) == len(picks) - len(set(picks))
    assert all(d.same_body for d in duplicates)
    assert [a.position for a in archived] == list(range(len(archived)))
    assert verify(rows_of(archived)) == []


@given(ids, st.integers(1, 39))
def test_a_chain_built_in_two_batches_equals_one_built_at_once(picks: list[int], cut: int
                                                              ) -> None:
    deliveries = [delivery(i, uuid.UUID(int=p)) for i, p in enumerate(picks)]
    whole, _, _ = chain({}, deliveries, {})
    first, _, heads = chain({}, deliveries[:cut], {})
    known = {a.delivery.event.event_id: "" for a in first}
    second, _, _ = chain(heads, deliveries[cut:], known)
    assert rows_of(first + second) == rows_of(whole)


def test_a_second_copy_with_another_body_is_a_conflicting_duplicate() -> None:
    event_id = uuid.uuid4()
    _, duplicates, _ = chain({}, [delivery(0, event_id), delivery(1, event_id, title="别的")], {})
    assert [d.same_body for d in duplicates] == [False]


def test_partitions_have_chains_of_their_own() -> None:
    deliveries = [delivery(0, uuid.uuid4(), partition=0), delivery(0, uuid.uuid4(), partition=1)]
    archived, _, heads = chain({}, deliveries, {})
    assert [a.prev_hash for a in archived] == [GENESIS, GENESIS]
    assert set(heads) == {("gridgov.incidents", 0), ("gridgov.incidents", 1)}


def archived_rows(n: int) -> list[tuple[int, bytes, bytes, bytes]]:
    archived, _, _ = chain({}, [delivery(i, uuid.uuid4()) for i in range(n)], {})
    return rows_of(archived)


@given(st.integers(0, 9))
def test_an_edited_body_is_found_at_its_position(at: int) -> None:
    rows = archived_rows(10)
    position, body, prev, link = rows[at]
    rows[at] = (position, body.replace(b"\xe8\xb7\xaf", b"\xe9\x81\x93"), prev, link)
    assert any(f"position {at}:" in p for p in verify(rows))


@given(st.integers(0, 9))
def test_a_deleted_row_is_found_at_its_position(at: int) -> None:
    rows = archived_rows(10)
    head = Head(10, rows[9][3])
    del rows[at]
    problems = verify(rows, end=head)
    assert problems[0].startswith(f"position {at}:")


def test_an_inserted_row_is_found() -> None:
    rows = archived_rows(5)
    rows.insert(2, (2, b'{"forged": true}', rows[1][3], b"\x00" * 32))
    assert verify(rows)


def test_a_partial_check_starts_from_a_known_head() -> None:
    rows = archived_rows(6)
    assert verify(rows[3:], Head(3, rows[2][3])) == []
