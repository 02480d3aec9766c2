"""The runner applies each record once: below the stored offset is skipped, a gap rewinds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from events.log import Record
from projections.runner import decode, plan

TP = ("gridgov.incidents", 3)


def records(*offsets: int, partition: int = 3) -> list[Record]:
    return [Record("gridgov.incidents", partition, o, None, b"{}") for o in offsets]


def test_records_below_the_stored_offset_are_skipped() -> None:
    fresh, rewind = plan(records(4, 5, 6, 7), {TP: 6})
    assert [r.offset for r in fresh] == [6, 7]
    assert rewind == {}


def test_a_batch_that_starts_past_the_stored_offset_rewinds_its_partition_only() -> None:
    fresh, rewind = plan(records(9, 10) + records(0, 1, partition=4), {TP: 6})
    assert rewind == {TP: 6}
    assert [(r.partition, r.offset) for r in fresh] == [(4, 0), (4, 1)]


@given(st.integers(0, 50), st.integers(1, 50), st.integers(0, 100))
def test_whatever_is_redelivered_the_next_offset_only_moves_forward(
    first: int, count: int, stored: int
) -> None:
    fresh, rewind = plan(records(*range(first, first + count)), {TP: stored})
    if rewind:
        assert first > stored and fresh == []
    else:
        assert all(r.offset >= stored for r in fresh)
        assert len(fresh) == max(0, first + count - max(first, stored))


def test_unreadable_records_are_poison_with_a_reason() -> None:
    good, poison = decode([Record("t", 0, 0, None, b"\xff"), Record("t", 0, 1, None, b"{}")])
    assert good == []
    assert [r.offset for r, _ in poison] == [0, 1]
    assert all(reason for _, reason in poison)
