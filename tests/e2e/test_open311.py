"""Open311 GeoReport v2 on the real stack, checked field by field against the published spec
(wiki.open311.org/GeoReport_v2), and by a third-party client from PyPI (`georeport`).

The JSON Schemas below are ours, written from the spec's tables: the one published for
GeoReport v2 responses (open311/schema-validation) is shipped by no package on PyPI, npm or
Debian, the only sources this project may install from.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import httpx
import jsonschema
import pytest
import xmltodict
from georeport import GeoReport

from events.envelope import Role
from tests.stack import RunningStack, command, http, wait_until

NULLABLE_TEXT = {"type": ["string", "null"]}
W3 = {"type": "string",
      "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"}
SERVICES_SCHEMA = {"type": "array", "minItems": 1, "items": {
    "type": "object", "additionalProperties": False,
    "required": ["service_code", "service_name", "description", "metadata", "type",
                 "keywords", "group"],
    "properties": {"service_code": {"type": "string", "minLength": 1},
                   "service_name": {"type": "string", "minLength": 1},
                   "description": NULLABLE_TEXT, "metadata": {"type": "boolean"},
                   "type": {"enum": ["realtime", "batch", "blackbox"]},
                   "keywords": NULLABLE_TEXT, "group": NULLABLE_TEXT}}}
DEFINITION_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["service_code", "attributes"],
    "properties": {"service_code": {"type": "string"}, "attributes": {"type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "required": ["variable", "code", "datatype", "required", "datatype_description",
                     "order", "description"],
        "properties": {
            "variable": {"type": "boolean"}, "code": {"type": "string", "minLength": 1},
            "datatype": {"enum": ["string", "number", "datetime", "text", "singlevaluelist",
                                  "multivaluelist"]},
            "required": {"type": "boolean"}, "datatype_description": NULLABLE_TEXT,
            "order": {"type": "integer", "minimum": 1}, "description": {"type": "string"},
            "values": {"type": "array", "items": {
                "type": "object", "required": ["key", "name"], "additionalProperties": False,
                "properties": {"key": {}, "name": {"type": "string"}}}}}}}}}
POSTED_SCHEMA = {"type": "array", "minItems": 1, "maxItems": 1, "items": {
    "type": "object", "additionalProperties": False,
    "oneOf": [{"required": ["service_request_id"], "not": {"required": ["token"]}},
              {"required": ["token"], "not": {"required": ["service_request_id"]}}],
    "properties": {"service_request_id": {"type": "string"}, "token": {"type": "string"},
                   "service_notice": NULLABLE_TEXT, "account_id": NULLABLE_TEXT}}}
REQUEST_FIELDS = ["service_request_id", "status", "status_notes", "service_name", "service_code",
                  "description", "agency_responsible", "service_notice", "requested_datetime",
                  "updated_datetime", "expected_datetime", "address", "address_id", "zipcode",
                  "lat", "long", "media_url"]
REQUESTS_SCHEMA = {"type": "array", "maxItems": 1000, "items": {
    "type": "object", "additionalProperties": False,
    "required": ["service_request_id", "status", "service_code", "requested_datetime"],
    "properties": {
        **{field: NULLABLE_TEXT for field in REQUEST_FIELDS},
        "service_request_id": {"type": "string", "minLength": 1},
        "status": {"enum": ["open", "closed"]}, "service_code": {"type": "string"},
        "description": {"type": ["string", "null"], "maxLength": 4000},
        "requested_datetime": W3, "updated_datetime": {"anyOf": [W3, {"type": "null"}]},
        "expected_datetime": {"anyOf": [W3, {"type": "null"}]},
        "lat": {"type": ["number", "null"], "minimum": -90, "maximum": 90},
        "long": {"type": ["number", "null"], "minimum": -180, "maximum": 180},
        "media_url": {"anyOf": [{"type": "string", "pattern": "^https?://"},
                                {"type": "null"}]}}}}
ERRORS_SCHEMA = {"type": "array", "minItems": 1, "items": {
    "type": "object", "additionalProperties": False, "required": ["code", "description"],
    "properties": {"code": {"type": "integer"}, "description": {"type": "string",
                                                                "minLength": 1}}}}
LISTS = ("service", "attribute", "value", "request", "error")


def conforms(answer: httpx.Response, schema: dict[str, Any], status: int = 200) -> Any:
    """The answer's JSON, once its status, content type and shape are the spec's."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    body = answer.json()
    jsonschema.validate(body, schema)
    return body


def as_xml(answer: httpx.Response, root: str, status: int = 200) -> Any:
    """The answer's XML, once it is the spec's: declared UTF-8, no namespace, this root."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "text/xml; charset=utf-8"
    assert answer.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    assert "xmlns" not in answer.text
    return xmltodict.parse(answer.content, force_list=LISTS)[root]


def xml_text(value: Any) -> str | None:
    """How the spec's XML says a JSON value (the Spark convention)."""
    if value is None:
        return None
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def open311(stack: RunningStack, **headers: str) -> httpx.Client:
    return http(stack.info["ingest_url"] + "/open311/v2", headers=headers)


def a_request(**fields: Any) -> dict[str, Any]:
    return {"service_code": "safety_hazard", "lat": "27.930123", "long": "112.520456",
            "address_string": "银田寺社区 3 号楼二单元 502室",
            "description": f"楼道堆放纸箱，阻塞消防通道 {uuid.uuid4().hex[:6]}；住户张先生"
                           "（13800001234）反映", **fields}


def post(stack: RunningStack, token: str, fmt: str = "json", **fields: Any) -> httpx.Response:
    """POST a service request as the spec sends it: form-encoded, the key as api_key."""
    with open311(stack) as client:
        return client.post(f"/requests.{fmt}", data={"api_key": token, **a_request(**fields)})


def filed(stack: RunningStack, token: str, **fields: Any) -> str:
    return str(conforms(post(stack, token, **fields), POSTED_SCHEMA, 201)[0][
        "service_request_id"])


def read(stack: RunningStack, token: str, request_id: str,
         until: Any = lambda r: True) -> dict[str, Any]:
    """One service request as Open311 shows it, once `until(request)` holds."""
    def shown() -> dict[str, Any] | None:
        with open311(stack) as client:
            answer = client.get(f"/requests/{request_id}.json", params={"api_key": token})
        found = conforms(answer, REQUESTS_SCHEMA)[0] if answer.status_code == 200 else None
        return found if found and until(found) else None
    return wait_until(shown, what=f"service request {request_id}")


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def w3(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    assert at.tzinfo is not None
    return at


def to_the_second(text: str) -> datetime:
    """A time from our own API, as the spec's w3 times show it: to the second."""
    return datetime.fromisoformat(text).replace(microsecond=0)


def test_services_are_the_categories_with_the_specs_fields_in_json_and_xml(
    stack: RunningStack, worker: str
) -> None:
    with open311(stack) as client:
        zh = conforms(client.get("/services.json", params={"api_key": worker}), SERVICES_SCHEMA)
        en = conforms(client.get("/services.json", params={"api_key": worker},
                                 headers={"accept-language": "en-GB,en;q=0.9"}), SERVICES_SCHEMA)
        xml = as_xml(client.get("/services.xml", params={"api_key": worker}), "services")
    codes = ["safety_hazard", "public_order", "dispute", "environment", "facilities",
             "epidemic_prevention", "other"]
    assert [s["service_code"] for s in zh] == [s["service_code"] for s in en] == codes
    names = {s["service_code"]: (s["service_name"], e["service_name"])
             for s, e in zip(zh, en, strict=True)}
    assert names["safety_hazard"] == ("安全隐患", "Safety hazard")
    assert names["dispute"] == ("矛盾纠纷", "Dispute")
    assert all(s["type"] == "realtime" for s in zh)
    assert xml["service"] == [{k: xml_text(v) for k, v in s.items()} for s in zh]


def test_a_service_definition_lists_its_attributes_and_an_unknown_code_is_404(
    stack: RunningStack, worker: str
) -> None:
    with open311(stack) as client:
        found = conforms(client.get("/services/environment.json", params={"api_key": worker}),
                         DEFINITION_SCHEMA)
        xml = as_xml(client.get("/services/environment.xml", params={"api_key": worker}),
                     "service_definition")
        missing = client.get("/services/potholes.json", params={"api_key": worker})
        missing_xml = client.get("/services/potholes.xml", params={"api_key": worker})
    assert found["service_code"] == xml["service_code"] == "environment"
    orders = [a["order"] for a in found["attributes"]]
    assert orders == sorted(set(orders)) and {a["code"] for a in found["attributes"]} >= {
        "title", "group", "building", "landmark"}
    assert [a["code"] for a in xml["attributes"]["attribute"]] == \
        [a["code"] for a in found["attributes"]]
    assert conforms(missing, ERRORS_SCHEMA, 404)[0]["code"] == 404
    assert as_xml(missing_xml, "errors", 404)["error"][0]["code"] == "404"


def test_a_posted_request_is_an_incident_reported_v2_event_and_reads_back_masked(
    stack: RunningStack, grid: str
) -> None:
    token = stack.token(Role.worker, grid, sub="w-open311")
    answer = conforms(post(stack, token, first_name="三丰", last_name="张",
                           phone="13900001111", email="zhangsan@example.cn",
                           device_id="phone-7", **{"attribute[building]": "3 号楼二单元"}),
                      POSTED_SCHEMA, 201)
    request_id = answer[0]["service_request_id"]
    assert answer[0]["account_id"] == "w-open311"
    assert "1 个工作日" in answer[0]["service_notice"]

    shown = read(stack, token, request_id)  # waits for the chain, as a client would
    assert shown["service_request_id"] == request_id
    assert (shown["status"], shown["status_notes"]) == ("open", "已上报，待受理")
    assert (shown["service_code"], shown["service_name"]) == ("safety_hazard", "安全隐患")
    assert shown["description"].startswith("楼道堆放纸箱，阻塞消防通道")
    assert "13800001234" not in shown["description"] and "张先生" not in shown["description"]
    assert shown["address"] == "银田寺社区 3 号楼二单元 ***室"
    assert (shown["lat"], shown["long"]) == (27.93, 112.52)
    assert shown["agency_responsible"] is None and shown["expected_datetime"] is None
    assert w3(shown["updated_datetime"]) == w3(shown["requested_datetime"])
    assert shown["address_id"] is None and shown["zipcode"] is None

    rows = wait_until(lambda: stack.sql(
        "select event_type, schema_version, convert_from(body, 'UTF8') from archive"
        " where aggregate_id = %s", request_id), what="the report in the archive")
    assert [(t, v) for t, v, _ in rows] == [("incident.reported", 2)]
    assert "phone-7" not in rows[0][2]  # the device is part of the id's digest, not the event
    for contact in ("13900001111", "zhangsan@example.cn", "三丰"):
        assert contact not in rows[0][2]  # discarded, never written to the log
    with stack.query(token) as api:
        chain = ok(api.get(f"/v1/incidents/{request_id}"))
    assert chain["stage"] == "reported" and chain["links"]["report"]["by"] == "w-open311"
    assert w3(shown["requested_datetime"]) == to_the_second(chain["links"]["report"]["at"])


def test_a_retried_post_answers_the_same_id_and_appends_nothing(
    stack: RunningStack, grid: str
) -> None:
    token = stack.token(Role.worker, grid)
    fields = a_request()
    first = filed(stack, token, **fields)
    again = filed(stack, token, **fields)
    in_xml = as_xml(post(stack, token, "xml", **fields), "service_requests", 201)["request"]
    other = filed(stack, token, **{**fields, "description": fields["description"] + "（再次）"})
    assert first == again != other
    assert [r["service_request_id"] for r in in_xml] == [first] and "token" not in in_xml[0]
    read(stack, token, other)
    stack.archived("gridgov.incidents")
    assert stack.sql("select count(*) from archive where aggregate_id = %s", first)[0][0] == 1


def test_the_chain_gives_status_notes_agency_and_deadline(stack: RunningStack, grid: str) -> None:
    reporter = stack.token(Role.worker, grid, sub="w-lina")
    owner = stack.token(Role.worker, grid, sub="w-wangqiang")
    chief = stack.token(Role.grid_chief, grid, sub="gc-zhaomin")
    supervisor = stack.token(Role.supervisor, grid.rsplit("/", 2)[0], sub="sv-chenjing")
    request_id = filed(stack, reporter)
    read(stack, reporter, request_id)

    with stack.ingest(chief) as app:
        ok(command(app, request_id, {"type": "assign",
                                     "assignee": {"id": "w-wangqiang", "role": "worker"}}))
    with stack.ingest(owner) as app:
        ok(command(app, request_id, {"type": "accept"}))
    owned = read(stack, supervisor, request_id,
                 until=lambda r: r["status_notes"] == "责任人已受理")
    with stack.query(supervisor) as api:
        chain = ok(api.get(f"/v1/incidents/{request_id}"))
    assert owned["status"] == "open"
    assert owned["agency_responsible"] == f"{grid} (网格) 网格员"
    assert "w-wangqiang" not in str(owned)
    assert w3(owned["expected_datetime"]) == to_the_second(chain["deadline"])

    with stack.ingest(owner) as app:
        ok(command(app, request_id, {"type": "resolve", "measures": "联系物业清理",
                                     "outcome": "消防通道已畅通"}))
    resolved = read(stack, supervisor, request_id, until=lambda r: "已解决" in r["status_notes"])
    assert (resolved["status"], resolved["status_notes"]) == ("open", "已解决：消防通道已畅通")
    with stack.ingest(supervisor) as app:
        ok(command(app, request_id, {"type": "verify", "verdict": "accepted"}))
    closed = read(stack, supervisor, request_id, until=lambda r: r["status"] == "closed")
    with stack.query(supervisor) as api:
        chain = ok(api.get(f"/v1/incidents/{request_id}"))
    assert closed["status_notes"] == "已办结"
    assert w3(closed["updated_datetime"]) == to_the_second(chain["closed_at"])
    with open311(stack, **{"accept-language": "en"}) as client:
        english = conforms(client.get(f"/requests/{request_id}.json",
                                      params={"api_key": supervisor}), REQUESTS_SCHEMA)[0]
        xml = as_xml(client.get(f"/requests/{request_id}.xml", params={"api_key": supervisor}),
                     "service_requests")["request"]
    assert (english["status_notes"], english["service_name"]) == ("closed", "Safety hazard")
    assert xml == [{k: xml_text(v) for k, v in english.items()}]


def test_requests_are_listed_by_window_status_service_code_and_id(
    stack: RunningStack, grid: str
) -> None:
    token = stack.token(Role.worker, grid)
    chief = stack.token(Role.grid_chief, grid)
    hazard = filed(stack, token)
    litter = filed(stack, token, service_code="environment", description="河边垃圾堆放")
    read(stack, token, hazard)  # the two may sit on different partitions, projected apart
    read(stack, token, litter)
    with stack.ingest(chief) as app:
        ok(command(app, litter, {"type": "reject", "reason": "duplicate",
                                 "duplicate_of": hazard}))
    read(stack, token, litter, until=lambda r: r["status"] == "closed")

    def ids(**params: Any) -> list[str]:
        with open311(stack) as client:
            found = conforms(client.get("/requests.json", params={"api_key": token, **params}),
                             REQUESTS_SCHEMA)
        return [r["service_request_id"] for r in found]

    assert set(ids()) == {hazard, litter}  # the default window: the last 90 days
    assert ids(status="closed") == [litter]
    assert ids(status="open") == [hazard]
    assert set(ids(status="open,closed")) == {hazard, litter}
    assert ids(service_code="environment") == [litter]
    assert ids(service_code=["environment", "safety_hazard"], status="closed") == [litter]
    assert ids(start_date="2031-01-01T00:00:00Z") == []
    assert ids(end_date="2020-01-01T00:00:00+08:00") == []
    # the ids override every other argument
    assert ids(service_request_id=f"{hazard},{litter}", status="closed",
               start_date="2031-01-01T00:00:00Z") == [litter, hazard]  # newest first
    with open311(stack) as client:
        wide = client.get("/requests.json", params={
            "api_key": token, "start_date": "2026-01-01T00:00:00Z",
            "end_date": "2026-06-01T00:00:00Z"})
        naive = client.get("/requests.xml", params={"api_key": token,
                                                    "start_date": "2026-01-01T00:00:00"})
        status = client.get("/requests.json", params={"api_key": token, "status": "pending"})
    assert "90 days" in conforms(wide, ERRORS_SCHEMA, 400)[0]["description"]
    assert as_xml(naive, "errors", 400)["error"][0]["description"].startswith("start_date")
    assert conforms(status, ERRORS_SCHEMA, 400)[0]["description"].startswith("status")


def test_a_token_for_one_grid_sees_nothing_of_another(stack: RunningStack, grid: str) -> None:
    mine = stack.token(Role.worker, grid)
    elsewhere = grid.rsplit("/", 1)[0] + "/99"
    theirs = stack.token(Role.worker, elsewhere)
    request_id = filed(stack, mine)
    read(stack, mine, request_id)
    with open311(stack) as client:
        listed = conforms(client.get("/requests.json", params={"api_key": theirs}),
                          REQUESTS_SCHEMA)
        by_id = client.get(f"/requests/{request_id}.json", params={"api_key": theirs})
        named = client.get("/requests.json", params={"api_key": theirs, "jurisdiction_id": grid})
        filing = client.post("/requests.json", data={"api_key": theirs,
                                                     "jurisdiction_id": grid, **a_request()})
    assert request_id not in [r["service_request_id"] for r in listed]
    assert conforms(by_id, ERRORS_SCHEMA, 404)[0]["description"].startswith(
        "service_request_id")
    assert conforms(named, ERRORS_SCHEMA, 404)[0]["description"].startswith("jurisdiction_id")
    assert conforms(filing, ERRORS_SCHEMA, 403)[0]["description"].startswith("jurisdiction_id")


@pytest.mark.parametrize(("method", "path", "send", "status", "about"), [
    ("post", "/requests.json", {"data": {"service_code": "other"}}, 403, "api_key"),
    ("post", "/requests.xml", {"data": {"api_key": "not-a-token"}}, 403, "api_key"),
    ("get", "/requests.json", {"params": {"api_key": "x.y.z"}}, 403, "api_key"),
    ("post", "/requests.json", {"json": {"service_code": "other"}}, 400, "content-type"),
    ("post", "/requests.json", {"data": {"description": "x", "lat": "1", "long": "2"}}, 400,
     "service_code"),
    ("post", "/requests.json", {"data": {"service_code": "potholes"}}, 404, "service_code"),
    ("post", "/requests.json", {"data": {**a_request(), "long": ""}}, 400, "long"),
    ("post", "/requests.json", {"data": {**a_request(), "lat": "91"}}, 400, "lat"),
    ("post", "/requests.json", {"data": {**a_request(), "description": "x" * 4001}}, 400,
     "description"),
    ("post", "/requests.json", {"content": b"service_code=%ff%fe",
                                "headers": {"content-type": "application/x-www-form-urlencoded"}},
     400, "body"),
    ("post", "/requests.json", {"data": {"description": "长" * 70000}}, 400, "body"),
    ("get", "/requests/nothing-here.json", {}, 404, "service_request_id"),
    ("get", "/requests/nul%00here.xml", {}, 404, "service_request_id"),
    ("get", "/requests.json", {"params": {"service_request_id": "a\x00b,ok"}}, 200, ""),
    ("post", "/requests.json", {"data": {**a_request(), "description": "a\x00b"}}, 400,
     "description"),
    ("get", "/requests.json", {"params": {"start_date": "9999-12-31T00:00:00Z"}}, 400,
     "start_date"),
    ("get", "/requests.json", {"params": {"end_date": "0001-01-01T00:00:00Z"}}, 400,
     "end_date"),
    ("get", "/services.json", {"headers": {"authorization": "Basic été".encode("latin-1")}},
     403, "api_key"),
    ("get", "/requests.html", {}, 404, "format"),
    ("get", "/tickets.json", {}, 404, "path"),
    ("get", "/services.json", {"params": {"jurisdiction_id": "not/a/place"}}, 400,
     "jurisdiction_id"),
])
def test_errors_are_the_specs_array_of_code_and_description_never_a_500(
    stack: RunningStack, worker: str, method: str, path: str, send: dict[str, Any],
    status: int, about: str
) -> None:
    key = {} if about == "api_key" else {"api_key": worker}
    if "data" in send and about != "api_key":
        send = {**send, "data": {**key, **send["data"]}}
    elif "data" not in send and about != "api_key":
        send = {**send, "params": {**key, **send.get("params", {})}}
    with open311(stack) as client:
        answer = getattr(client, method)(path, **send)
    if status == 200:
        assert conforms(answer, REQUESTS_SCHEMA) == []
        return
    if path.endswith(".xml"):
        error = as_xml(answer, "errors", status)["error"][0]
        assert error["code"] == str(status)
    else:
        error = conforms(answer, ERRORS_SCHEMA, status)[0]
        assert error["code"] == status
    assert error["description"].startswith(about), error


def test_a_role_that_may_not_report_is_refused_with_403(stack: RunningStack, grid: str) -> None:
    auditor = stack.token(Role.auditor, grid)
    answer = post(stack, auditor)
    assert "may not emit incident.reported" in conforms(answer, ERRORS_SCHEMA, 403)[0][
        "description"]


def test_a_third_party_client_lists_services_and_reads_a_request_back_with_the_chains_status(
    stack: RunningStack, grid: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`georeport` (PyPI) reads; it cannot post (its README says so) and sends no api_key on
    reads, so the token reaches it the way requests-based clients take credentials, a .netrc
    (HTTP Basic, the token as password); the post is a plain form POST with httpx."""
    token = stack.token(Role.worker, grid, sub="w-client")
    chief = stack.token(Role.grid_chief, grid, sub="gc-client")
    supervisor = stack.token(Role.supervisor, grid, sub="sv-client")
    root = stack.info["ingest_url"] + "/open311/v2"
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {urlparse(root).hostname} login api_key password {token}\n")
    monkeypatch.setenv("NETRC", str(netrc))
    client, xml_client = GeoReport(root), GeoReport(root, output_format="xml")

    services = client.get_service_list()
    assert {s["service_code"] for s in services} >= {"safety_hazard", "dispute", "other"}
    assert [s["service_code"] for s in xml_client.get_service_list()] == \
        [s["service_code"] for s in services]
    definition = client.get_service_definition("facilities")
    assert definition["service_code"] == "facilities" and definition["attributes"]

    posted = httpx.post(f"{root}/requests.json", data={
        "api_key": token, "service_code": "facilities", "lat": "27.93", "long": "112.52",
        "description": "文化广场路灯不亮", "attribute[landmark]": "文化广场东侧"}, timeout=30)
    request_id = conforms(posted, POSTED_SCHEMA, 201)[0]["service_request_id"]
    found = client.get_service_request(request_id)  # the server waits for the chain
    assert (found["service_request_id"], found["status"]) == (request_id, "open")
    assert found["service_name"] == "公共设施"

    with stack.ingest(chief) as app:
        ok(command(app, request_id, {"type": "resolve", "measures": "更换灯泡",
                                     "outcome": "路灯已恢复"}))
    with stack.ingest(supervisor) as app:
        ok(command(app, request_id, {"type": "verify", "verdict": "accepted"}))
    wait_until(lambda: client.get_service_request(request_id)["status"] == "closed",
               what="the chain's close through the client")
    closed = [r for r in client.get_service_requests(status="closed", service_code="facilities")
              if r["service_request_id"] == request_id]
    assert [r["status_notes"] for r in closed] == ["已办结"]
    in_xml = xml_client.get_service_request(request_id)
    assert (in_xml["status"], in_xml["service_code"]) == ("closed", "facilities")
    assert re.fullmatch(r"\S+\+08:00", in_xml["updated_datetime"])
