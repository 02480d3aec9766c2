"""Both APIs describe themselves: the OpenAPI documents build and name every route we serve."""

from __future__ import annotations

import httpx

from tests.stack import RunningStack


def test_the_openapi_documents_list_the_routes(stack: RunningStack) -> None:
    ingest = httpx.get(stack.info["ingest_url"] + "/openapi.json", timeout=30)
    query = httpx.get(stack.info["query_url"] + "/openapi.json", timeout=30)
    assert ingest.status_code == 200 and query.status_code == 200, (ingest.text, query.text)
    assert {"/v1/events", "/v1/events/batch", "/v1/commands",
            "/v1/points/commands"} <= set(ingest.json()["paths"])
    assert {"/v1/incidents", "/v1/incidents/{incident_id}", "/v1/disputes", "/v1/rates",
            "/v1/rates/explain", "/v1/funnel", "/v1/live", "/v1/audit/history/{aggregate_id}",
            "/v1/audit/verify"} <= set(query.json()["paths"])
    for docs in (stack.info["ingest_url"], stack.info["query_url"]):
        assert httpx.get(docs + "/docs", timeout=30).status_code == 200
