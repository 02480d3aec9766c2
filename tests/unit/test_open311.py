"""Open311 GeoReport v2 in our terms: the form, the ids, the window, a matter as a service
request, masking and the XML, checked without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from events.catalog import event_from_dict
from events.dispute import DisputeKind, DisputeReported, MediationRecorded, Party
from events.envelope import Actor, Event, Payload, Role
from events.incident import (
    Category,
    IncidentAccepted,
    IncidentAssigned,
    IncidentClosed,
    IncidentRejected,
    IncidentReportedV2,
    IncidentResolved,
    IncidentVerified,
    Level,
    Location,
    Person,
    Site,
)
from services.admission import admit
from services.auth import Principal
from services.errors import IdConflict, Invalid, Malformed, NotFound, Unauthenticated
from services.open311_requests import (
    last_transition,
    listed,
    mask,
    service_request,
    stages,
    status_of,
    window,
)
from services.open311_terms import (
    SERVICES,
    definition,
    errors_of,
    event_id_of,
    grid_for,
    language,
    parse_form,
    report_body,
    request_event_id,
    rules,
    service_list,
    submission,
    to_xml,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 20, 9, 12, tzinfo=SHANGHAI)
GRID = "430382/101/003/07"
INCIDENT = "inc-430382-0311"
RULES = rules(None)
worker = Principal(sub="w-lina", role=Role.worker, scope=(GRID,))


def form(**fields: Any) -> dict[str, list[str]]:
    return parse_form(urlencode(fields, doseq=True).encode(), "application/x-www-form-urlencoded")


A_REQUEST = {"service_code": "safety_hazard", "address_string": "银田寺社区 3 号楼二单元",
             "description": "楼道堆放纸箱，阻塞消防通道", "lat": "27.93012", "long": "112.52047",
             "media_url": "https://img.example/1.jpg", "attribute[building]": "3 号楼二单元"}


# -- services ---------------------------------------------------------------------------------
def test_every_category_is_a_service_named_in_chinese_or_english() -> None:
    zh, en = service_list("zh", RULES), service_list("en", RULES)
    assert sorted(s["service_code"] for s in zh) == sorted(c.value for c in Category)
    assert {s["service_code"]: s["service_name"] for s in zh}["dispute"] == "矛盾纠纷"
    assert {s["service_code"]: s["service_name"] for s in en}["dispute"] == "Dispute"
    for service in zh + en:
        assert set(service) == {"service_code", "service_name", "description", "metadata",
                                "type", "keywords", "group"}
        assert service["type"] == "realtime" and service["metadata"] is True
    assert "1 个工作日" in zh[0]["description"]  # the SLA, from sla.toml


@pytest.mark.parametrize(("header", "lang"), [
    (None, "zh"), ("en", "en"), ("en-US,en;q=0.9", "en"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    ("fr, en;q=0.5", "en"), ("en;q=0.2, zh;q=0.8", "zh"), ("en;q=oops", "zh"), ("*", "zh")])
def test_the_language_is_chinese_unless_english_is_preferred(header: str | None,
                                                             lang: str) -> None:
    assert language(header) == lang


def test_a_definition_lists_the_optional_site_attributes_in_order() -> None:
    attributes = definition(Category.environment, "en")["attributes"]
    assert [a["code"] for a in attributes] == ["title", "group", "building", "landmark",
                                               "patrol_id"]
    assert [a["order"] for a in attributes] == [1, 2, 3, 4, 5]
    assert all(a["datatype"] == "string" and a["required"] is False and a["variable"] is True
               for a in attributes)


# -- POST: the form becomes the event an app would have sent ----------------------------------
def test_a_form_becomes_an_incident_reported_v2_that_ingest_admits() -> None:
    fields = form(**A_REQUEST)
    submitted = submission(fields)
    event_id = request_event_id(worker.sub, fields)
    event = admit(report_body(submitted, event_id=event_id, grid=GRID, now=NOW), worker,
                  now=NOW)
    assert (event.event_type, event.schema_version) == ("incident.reported", 2)
    assert event.aggregate_id == f"inc-o311-{event_id.hex}"
    assert event_id_of(event.aggregate_id) == event_id
    payload = event.payload
    assert isinstance(payload, IncidentReportedV2)
    assert payload.title == "楼道堆放纸箱，阻塞消防通道"  # the description's first line
    assert payload.location == Site(address="银田寺社区 3 号楼二单元", building="3 号楼二单元",
                                    lat=27.93012, lon=112.52047)
    assert payload.photos == ["https://img.example/1.jpg"]


def test_lat_and_long_alone_are_a_location() -> None:
    submitted = submission(form(service_code="other", description="路灯不亮", lat="27.9",
                                long="112.5"))
    assert submitted.address == "27.900000, 112.500000"


def test_the_id_is_the_caller_and_the_fields_but_not_the_key_or_contact_details() -> None:
    plain = request_event_id("w-lina", form(**A_REQUEST))
    assert plain == request_event_id("w-lina", form(**A_REQUEST, api_key="t", first_name="张",
                                                     phone="13800001234", email="a@b.cn"))
    assert plain != request_event_id("w-wang", form(**A_REQUEST))
    assert plain != request_event_id("w-lina", form(**A_REQUEST, device_id="phone-2"))
    assert plain != request_event_id("w-lina", form(**{**A_REQUEST, "description": "又堆满了"}))


@pytest.mark.parametrize(("fields", "field"), [
    ({"description": "x", "address_string": "y"}, "service_code"),
    ({**A_REQUEST, "lat": ""}, "lat"),
    ({**A_REQUEST, "long": "east"}, "long"),
    ({**A_REQUEST, "lat": "nan"}, "lat"),
    ({"service_code": "other", "description": "x"}, "address_string"),
    ({"service_code": "other", "address_string": "y"}, "description"),
    ({**A_REQUEST, "address_id": "545483"}, "address_id"),
    ({**A_REQUEST, "attribute[colour]": "red"}, "attribute[colour]"),
    ({**A_REQUEST, "priority": "high"}, "priority"),
    ({**A_REQUEST, "description": ["a", "b"]}, "description"),
])
def test_a_bad_form_is_refused_naming_the_spec_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as refused:
        submission(form(**fields))
    assert refused.value.errors[0]["field"] == field


def test_an_unknown_service_is_not_found() -> None:
    with pytest.raises(NotFound):
        submission(form(**{**A_REQUEST, "service_code": "potholes"}))


@pytest.mark.parametrize(("raw", "content_type"), [
    (b"service_code=other", "application/json"), (b"description=%FF", None)])
def test_a_body_that_is_not_a_utf8_form_is_malformed(raw: bytes, content_type: str | None
                                                    ) -> None:
    with pytest.raises(Malformed):
        parse_form(raw, content_type)


def test_the_grid_is_the_one_named_or_the_callers_only_grid() -> None:
    assert grid_for(None, worker) == GRID
    assert grid_for("430382/101/003/02", worker) == "430382/101/003/02"  # admission checks it
    chief = Principal(sub="gc-1", role=Role.grid_chief, scope=(GRID, "430382/101/003/02"))
    with pytest.raises(Invalid) as refused:
        grid_for(None, chief)
    assert refused.value.errors[0]["field"] == "jurisdiction_id"


# -- GET: the window, the status, a matter as a service request ------------------------------
def test_the_window_defaults_to_the_last_90_days_and_never_spans_more() -> None:
    assert window(None, None, now=NOW) == (NOW - timedelta(days=90), NOW)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert window("2026-01-01T00:00:00Z", None, now=NOW) == (start, start + timedelta(days=90))
    assert window(None, "2026-01-01T00:00:00Z", now=NOW) == (start - timedelta(days=90), start)
    with pytest.raises(Invalid, match="90 days"):
        window("2026-01-01T00:00:00Z", "2026-04-02T00:00:00Z", now=NOW)
    with pytest.raises(Invalid, match="before"):
        window("2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z", now=NOW)
    for naive in ("2026-01-01T00:00:00", "2026-01-01", "yesterday"):
        with pytest.raises(Invalid, match="timezone"):
            window(naive, None, now=NOW)


def test_statuses_select_stages_and_parameters_may_repeat_or_be_comma_delimited() -> None:
    assert listed(["open,closed", "", " open "]) == ["open", "closed", "open"]
    assert stages([]) is None
    assert stages(["closed"]) == ["closed", "rejected"]
    assert "resolved" in (stages(["open"]) or [])  # awaiting supervision is still open
    with pytest.raises(Invalid):
        stages(["pending"])
    assert [status_of(s) for s in ("reported", "resolved", "verified", "closed", "rejected")] \
        == ["open", "open", "open", "closed", "closed"]


reporter = Actor(id="w-lina", role=Role.worker)
owner = Actor(id="w-wangqiang", role=Role.worker)
chief = Actor(id="gc-zhaomin", role=Role.grid_chief)
supervisor = Actor(id="sv-chenjing", role=Role.supervisor)


def step(payload: Payload, by: Actor, minutes: int, seq: int) -> Event[Any]:
    at = NOW + timedelta(minutes=minutes)
    return event_from_dict({
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{INCIDENT}/{seq}")),
        "event_type": payload.event_type, "schema_version": payload.schema_version,
        "occurred_at": at, "recorded_at": at, "actor": by.model_dump(), "grid": GRID,
        "aggregate_id": INCIDENT, "aggregate_seq": seq, "payload": payload.model_dump()})


REPORT = IncidentReportedV2(
    category=Category.safety_hazard, title="楼道堆放杂物",
    description="3 号楼二单元 502 室门口堆放纸箱；住户张先生（13800001234）反映。",
    location=Site(address="银田寺社区 3 号楼二单元 502室", lat=27.930123, lon=112.520456),
    photos=["https://img.example/1.jpg"])
DEADLINE = NOW + timedelta(days=1)


def lifecycle() -> list[Event[Any]]:
    return [
        step(REPORT, reporter, 0, 0),
        step(IncidentAssigned(assignee=Person(id="w-wangqiang", role=Role.worker),
                              deadline=DEADLINE, level=Level.grid), chief, 5, 1),
        step(IncidentAccepted(deadline=DEADLINE), owner, 10, 2),
        step(IncidentResolved(measures="联系物业清理", outcome="消防通道已畅通"), owner, 60, 3),
        step(IncidentVerified(verdict="accepted", satisfaction=5), supervisor, 90, 4),
        step(IncidentClosed(), supervisor, 90, 5),
    ]


def test_an_open_matter_reads_as_reported_with_its_deadline_once_accepted() -> None:
    events = lifecycle()[:3]
    shown = service_request(INCIDENT, events, RULES, "zh")
    assert shown["status"] == "open"
    assert shown["status_notes"] == "责任人已受理"
    assert shown["agency_responsible"] == "韶山市银田镇银田寺社区第七网格 网格员"
    assert shown["expected_datetime"] == "2026-11-21T09:12:00+08:00"
    assert shown["requested_datetime"] == "2026-11-20T09:12:00+08:00"
    assert shown["updated_datetime"] == "2026-11-20T09:22:00+08:00"
    assert shown["service_name"] == "安全隐患" and shown["service_code"] == "safety_hazard"
    assert shown["media_url"] == "https://img.example/1.jpg"
    assert "w-wangqiang" not in str(shown) and "w-lina" not in str(shown)


def test_a_closed_matter_is_closed_at_its_closing_with_the_last_step_as_its_note() -> None:
    shown = service_request(INCIDENT, lifecycle(), RULES, "en")
    assert shown["status"] == "closed"
    assert shown["status_notes"] == "closed"
    assert shown["updated_datetime"] == "2026-11-20T10:42:00+08:00"
    assert shown["service_name"] == "Safety hazard"
    assert shown["agency_responsible"] == "韶山市银田镇银田寺社区第七网格 grid worker"


def test_a_step_the_stage_does_not_allow_is_not_the_last_transition() -> None:
    events = lifecycle()[:4]
    stray = step(IncidentResolved(measures="再次清理", outcome="已清理"), chief, 70, 9)  # not owner
    assert last_transition(INCIDENT, [*events, stray]) == events[-1]
    assert service_request(INCIDENT, [*events, stray], RULES, "zh")["status_notes"] == \
        "已解决：消防通道已畅通"


def test_a_rejection_closes_it_with_the_reason() -> None:
    events = [step(REPORT, reporter, 0, 0),
              step(IncidentRejected(reason="duplicate", duplicate_of="inc-1"), chief, 3, 1)]
    shown = service_request(INCIDENT, events, RULES, "zh")
    assert (shown["status"], shown["status_notes"]) == ("closed", "不予受理：重复事项 (inc-1)")
    assert shown["agency_responsible"] is None and shown["expected_datetime"] is None


def test_residents_personal_data_is_masked_and_coordinates_coarsened() -> None:
    shown = service_request(INCIDENT, [step(REPORT, reporter, 0, 0)], RULES, "zh")
    assert "13800001234" not in shown["description"] and "张先生" not in shown["description"]
    assert "某先生" in shown["description"] and "502" not in shown["description"]
    assert shown["description"].startswith("楼道堆放杂物\n")  # the title leads
    assert shown["address"] == "银田寺社区 3 号楼二单元 ***室"
    assert (shown["lat"], shown["long"]) == (27.93, 112.52)


@pytest.mark.parametrize(("said", "shown"), [
    ("电话 138 0000 1234", "电话 ***"), ("+86 13800001234", "***"), ("0731-5556789", "***"),
    ("身份证 43038219900101123X", "身份证 ***"), ("邮箱 zhang.san@qq.com", "邮箱 ***"),
    ("李阿姨和王大爷", "某阿姨和某大爷"), ("3 号楼二单元", "3 号楼二单元"),
    ("小区北门", "小区北门"),
])
def test_mask_replaces_what_identifies_a_resident_and_keeps_the_rest(said: str,
                                                                     shown: str) -> None:
    assert mask(said) == shown


def test_a_disputes_parties_are_masked_wherever_they_are_named() -> None:
    dispute = DisputeReported(
        kind=DisputeKind.neighbour, parties=[Party(name="张三丰", phone="13800001234"),
                                             Party(name="李四")],
        summary="张三丰与李四因宅基地边界争执", location=Location(description="马场村 3 组李四家"))
    events = [step(dispute, Actor(id="m-liu", role=Role.mediator), 0, 0),
              step(IncidentAccepted(deadline=DEADLINE), Actor(id="m-liu", role=Role.mediator),
                   5, 1),
              step(MediationRecorded(outcome="succeeded", agreement="张三丰同意后退半米"),
                   Actor(id="m-liu", role=Role.mediator), 30, 2)]
    shown = service_request(INCIDENT, events, RULES, "zh")
    assert shown["service_code"] == "dispute"
    assert shown["description"] == "某某与某某因宅基地边界争执"
    assert shown["address"] == "马场村 3 组某某家"
    assert shown["status_notes"] == "调解成功：某某同意后退半米"
    assert shown["agency_responsible"] == "韶山市银田镇银田寺社区第七网格 人民调解员"


# -- answers ----------------------------------------------------------------------------------
def test_refusals_take_the_specs_statuses_and_name_the_spec_fields() -> None:
    assert errors_of(Unauthenticated("authorization", "token expired")) == (
        403, [{"code": 403, "description": "api_key: token expired"}])
    assert errors_of(Invalid("payload.location.lat", "too big"))[1][0]["description"] == \
        "lat: too big"
    assert errors_of(IdConflict("event_id", "x"))[0] == 400
    assert errors_of(NotFound("service_code", "x"))[0] == 404


def test_the_xml_is_schemaless_utf8_with_its_declaration_and_empty_elements_for_nulls() -> None:
    xml = to_xml("service_requests", [{"service_request_id": "inc-1", "lat": 27.93,
                                       "status_notes": None, "description": "a < b & \x07"}])
    assert xml.decode() == (
        '<?xml version="1.0" encoding="utf-8"?>\n<service_requests><request>'
        "<service_request_id>inc-1</service_request_id><lat>27.93</lat><status_notes/>"
        "<description>a &lt; b &amp; \ufffd</description></request></service_requests>")
    nested = to_xml("service_definition", definition(Category.other, "zh")).decode()
    assert "<attributes><attribute><variable>true</variable>" in nested
    assert "<values></values>" in nested


def test_the_catalogue_names_every_category() -> None:
    assert set(SERVICES) == set(Category)
