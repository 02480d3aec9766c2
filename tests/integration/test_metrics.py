"""Every process exposes Prometheus metrics; what they count moves with the work done."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import RunningStack, an_incident, wait_until


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(metrics: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in metrics.items()
               if n == name and all((k, val) in ls for k, val in labels.items()))


def test_ingest_counts_and_times_events_by_type(stack: RunningStack, grid: str, worker: str
                                                ) -> None:
    url = stack.info["ingest_url"] + "/metrics/"
    before = samples(url)
    stack.ingest(worker).post("/v1/events", json=an_incident(grid))
    after = samples(url)
    kind = {"event_type": "incident.reported"}
    assert total(after, "gridgov_ingest_events_total", outcome="accepted", **kind) == \
        total(before, "gridgov_ingest_events_total", outcome="accepted", **kind) + 1
    assert total(after, "gridgov_ingest_latency_seconds_count", **kind) == \
        total(before, "gridgov_ingest_latency_seconds_count", **kind) + 1


def test_the_projector_reports_batches_lag_and_dead_letters(stack: RunningStack, grid: str,
                                                            worker: str) -> None:
    url = stack.info["projector_metrics_url"]
    event = an_incident(grid)
    stack.ingest(worker).post("/v1/events", json=event)
    wait_until(lambda: stack.sql("select 1 from archive where event_id = %s", event["event_id"]),
               what="the event archived")
    metrics = wait_until(lambda: (m := samples(url)) and
                         total(m, "gridgov_projector_events_total", projection="archive") and m,
                         what="projector metrics")
    assert total(metrics, "gridgov_projector_batch_size_count", projection="archive") >= 1
    assert any(n == "gridgov_projector_lag" for n, _ in metrics)
    assert ("gridgov_dead_letters_total", (("projection", "archive"),)) in metrics


def test_the_query_service_exposes_metrics_too(stack: RunningStack) -> None:
    answer = httpx.get(stack.info["query_url"] + "/metrics/", timeout=10)
    assert answer.status_code == 200
    assert "python_gc_objects_collected_total" in answer.text
