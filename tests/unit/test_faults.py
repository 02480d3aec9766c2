"""GRIDGOV_FAULT: which process dies where, and how often."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from projections.faults import Fault, Faults, FaultSpecError, parse


def test_a_spec_names_the_process_the_point_and_a_chance_or_a_count() -> None:
    assert parse("archive:after_commit=0.25, ingest:after_ack_before_receipt=#3") == (
        Fault("archive", "after_commit", chance=0.25),
        Fault("ingest", "after_ack_before_receipt", nth=3),
    )
    assert parse("after_write_before_commit") == (
        Fault("*", "after_write_before_commit", chance=1.0),)
    assert parse("") == ()


@pytest.mark.parametrize("spec", ["archive:nowhere=1", "archive:after_commit=2",
                                  "archive:after_commit=#x"])
def test_a_point_that_does_not_exist_or_a_bad_trigger_is_refused(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse(spec)


def test_a_count_fires_on_that_passage_only_and_only_for_its_process() -> None:
    faults = Faults("five_have:after_commit=#3")
    passages = [faults.should_fail("five_have", "after_commit") for _ in range(5)]
    assert passages == [False, False, True, False, False]
    assert not faults.should_fail("archive", "after_commit")


def test_a_chance_fires_about_that_often() -> None:
    faults = Faults("*:*=0.1", rng=random.Random(7))
    fired = sum(faults.should_fail("archive", "after_commit") for _ in range(10_000))
    assert 800 < fired < 1200


def test_a_fault_file_is_reread_when_the_harness_replaces_it(tmp_path: Path) -> None:
    spec = tmp_path / "fault"
    faults = Faults(f"@{spec}")
    assert not faults.should_fail("archive", "after_commit")  # no file: nothing armed
    spec.write_text("archive:after_commit=1")
    assert faults.should_fail("archive", "after_commit")
    draft = tmp_path / "draft"
    draft.write_text("")
    draft.replace(spec)
    assert not faults.should_fail("archive", "after_commit")
