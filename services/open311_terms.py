"""Open311 GeoReport v2 in our terms, and ours in its: pure functions, no I/O.

Services are the incident categories, named in Chinese and English, with their SLA; a posted
form becomes the `incident.reported` v2 body an app would have sent, with an id derived from
who sent which fields; refusals become the spec's error array; answers its schemaless XML.
Reading a matter back as a service request is `services/open311_requests.py`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl
from uuid import UUID, uuid5
from xml.sax.saxutils import escape

import orjson

from events.envelope import Role, place_path
from events.incident import (
    Category,
    Level,
)
from projections import sla
from services.auth import Principal
from services.errors import Invalid, Malformed, NotFound, Refused

FORMATS = ("json", "xml")
LIMIT = 1000  # the spec's default query limit: 90 days or the first 1000, whichever is smaller
WINDOW = timedelta(days=90)
LOCAL = sla.LOCAL
NAMESPACE = UUID("5a1d5f0e-6c1b-5e2f-9d4a-311000000002")  # of ids minted for Open311 requests
MINTED = "inc-o311-"
Rules = sla.Rules


@cache
def rules(path: Path | None) -> Rules:
    return sla.load(path or sla.DEFAULT_RULES)


LANGUAGES = ("zh", "en")


def language(accept: str | None) -> str:
    """zh or en, whichever Accept-Language prefers; Chinese, the users' own, by default."""
    best, best_q = "zh", 0.0
    for part in (accept or "").split(","):
        tag, _, params = part.partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        base = tag.strip().lower().split("-")[0]
        if base in ("zh", "en") and q > best_q:
            best, best_q = base, q
    return best


# -- services --------------------------------------------------------------------------------
class Service(NamedTuple):
    """A category as a service, said in Chinese and in English."""

    name: tuple[str, str]
    about: tuple[str, str]
    group: tuple[str, str]
    keywords: str  # both languages: the spec's synonyms, so either finds it


SERVICES: dict[Category, Service] = {
    Category.safety_hazard: Service(
        ("安全隐患", "Safety hazard"),
        ("楼道堆物、消防通道堵塞、危房、用电用气隐患",
         "Blocked stairwells or fire escapes, unsafe buildings, electricity or gas hazards"),
        ("安全稳定", "safety"), "消防, 危房, fire, hazard"),
    Category.public_order: Service(
        ("治安", "Public order"),
        ("治安隐患、可疑情况、噪声扰民", "Public order concerns, suspicious activity, nuisance"),
        ("安全稳定", "safety"), "治安, 扰民, police, nuisance"),
    Category.dispute: Service(
        ("矛盾纠纷", "Dispute"),
        ("家庭、邻里、债务、土地等矛盾纠纷，由调解员调处",
         "Family, neighbour, debt or land disputes, for mediation"),
        ("矛盾纠纷", "disputes"), "纠纷, 调解, dispute, mediation"),
    Category.environment: Service(
        ("人居环境", "Living environment"),
        ("垃圾堆放、污水、乱搭乱建、卫生死角",
         "Litter, sewage, illegal structures, neglected corners"),
        ("人居环境", "environment"), "垃圾, 污水, litter, sanitation"),
    Category.facilities: Service(
        ("公共设施", "Public facilities"),
        ("路灯、道路、井盖、健身器材等公共设施损坏",
         "Broken street lights, roads, manhole covers, fitness equipment"),
        ("公共设施", "facilities"), "路灯, 道路, street light, pothole"),
    Category.epidemic_prevention: Service(
        ("防疫", "Epidemic prevention"),
        ("防疫与公共卫生事项", "Epidemic prevention and public health"),
        ("公共卫生", "public health"), "防疫, 卫生, epidemic, health"),
    Category.other: Service(
        ("其他", "Other"), ("其他需要网格处理的事项", "Anything else for the grid to handle"),
        ("其他", "other"), "其他, other"),
}
#: the attributes a request may carry beyond the spec's fields: the parts of a v2 `Site`
ATTRIBUTES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {  # code: (about, hint)
    "title": (("标题", "Short title"),
              ("默认取描述的第一行", "defaults to the description's first line")),
    "group": (("村民小组或小区", "Village group or residential compound"),
              ("如 3 组、银田寺小区", "e.g. 3 组")),
    "building": (("楼栋或院落", "Building or courtyard"),
                 ("如 3 号楼二单元、王家院子", "e.g. 3 号楼二单元")),
    "landmark": (("参照物", "Landmark nearby"), ("如 小区北门东侧", "e.g. by the north gate")),
    "patrol_id": (("发现该事项的巡查记录编号", "The patrol that found it"),
                  ("巡查记录编号", "a patrol's aggregate id")),
}
ROLES = {Role.worker: ("网格员", "grid worker"), Role.grid_chief: ("网格长", "grid chief"),
         Role.police: ("社区民警", "community police"), Role.mediator: ("人民调解员", "mediator"),
         Role.supervisor: ("综治中心", "supervision centre"),
         Role.admin: ("管理员", "administrator")}
LEVELS = {Level.grid: ("网格", "grid", 4), Level.community: ("村（社区）", "community", 3),
          Level.town: ("镇（街道）", "town", 2), Level.county: ("县（市）", "county", 1)}


def category(code: str, refusal: type[Refused] = Invalid) -> Category:
    try:
        return Category(code)
    except ValueError:
        raise refusal("service_code", f"no service {code!r}; see services.json") from None


def notice(rules: Rules, service: Category, level: Level | None, lang: str) -> str:
    """The SLA, said to the reporter: working days from acceptance at the level it runs at."""
    level = level or Level.grid
    days = rules.deadline_days[service.value][level.value]
    zh, en, _ = LEVELS[level]
    if lang == "zh":
        return f"自受理起 {days} 个工作日内办结（{zh}级），逾期自动逐级上报"
    return (f"Resolved within {days} working day{'' if days == 1 else 's'} of acceptance at"
            f" {en} level; escalated automatically when overdue")


def service_list(lang: str, rules: Rules) -> list[dict[str, Any]]:
    """Every category as a service; `metadata` true: its definition lists optional attributes."""
    i = LANGUAGES.index(lang)
    return [{"service_code": code.value, "service_name": s.name[i],
             "description": f"{s.about[i]}{'。' if i == 0 else '. '}"
                            f"{notice(rules, code, None, lang)}",
             "metadata": True, "type": "realtime", "keywords": s.keywords, "group": s.group[i]}
            for code, s in SERVICES.items()]


def definition(service: Category, lang: str) -> dict[str, Any]:
    i = LANGUAGES.index(lang)
    return {"service_code": service.value, "attributes": [
        {"variable": True, "code": code, "datatype": "string", "required": False,
         "datatype_description": hint[i], "order": order, "description": about[i], "values": []}
        for order, (code, (about, hint)) in enumerate(ATTRIBUTES.items(), 1)]}


# -- places ----------------------------------------------------------------------------------
def jurisdiction(jurisdiction_id: str | None, caller: Principal) -> str | None:
    """The place `jurisdiction_id` names, if the caller may see it (else it is not found)."""
    if not jurisdiction_id:
        return None
    try:
        place_path(jurisdiction_id)
    except ValueError as exc:
        raise Invalid("jurisdiction_id", f"a place path: {exc}") from None
    if not caller.covers(jurisdiction_id):
        raise NotFound("jurisdiction_id", f"no jurisdiction {jurisdiction_id} in your scope")
    return jurisdiction_id


def grid_for(jurisdiction_id: str | None, caller: Principal) -> str:
    """The grid a request is filed in: the one named, or the caller's only grid."""
    if jurisdiction_id:
        return jurisdiction_id  # admission checks it is a grid in the caller's scope
    grids = [s for s in caller.scope if s != "*" and s.count("/") >= 3]
    if len(caller.scope) == 1 and len(grids) == 1:
        return grids[0]
    raise Invalid("jurisdiction_id", "required: your token covers more than one grid; name the"
                  " grid (county/town/community/grid) the matter is in")


# -- POST service request --------------------------------------------------------------------
FIELDS = ("api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string",
          "address_id", "email", "device_id", "account_id", "first_name", "last_name", "phone",
          "description", "media_url")
#: accepted and discarded: the reporter is the token's holder, and residents' contact details
#: are not written to a log that cannot forget them; nor are they part of a request's identity
UNKEPT = frozenset({"api_key", "email", "first_name", "last_name", "phone"})
ATTRIBUTE = re.compile(r"^attribute\[([a-z_]+)\](\[\])?$")
INCIDENT_ID = re.compile(r"[0-9A-Za-z_.:-]{1,64}")  # the envelope's aggregate_id


def parse_form(raw: bytes, content_type: str | None) -> dict[str, list[str]]:
    """A form-encoded body as the spec sends it: name -> values."""
    kind = (content_type or "application/x-www-form-urlencoded").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Malformed("content-type", "send application/x-www-form-urlencoded, as the spec says")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                          errors="strict", max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed("body", f"not a UTF-8 form: {exc}") from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise Malformed(name, "contains a NUL character")
        fields.setdefault(name, []).append(value)
    return fields


def single(fields: dict[str, list[str]], name: str) -> str | None:
    """One field's value; empty counts as absent, as the spec's optional arguments say."""
    values = [v for v in fields.get(name, []) if v != ""]
    if len(values) > 1:
        raise Invalid(name, "given more than once")
    return values[0] if values else None


@dataclass(frozen=True)
class Submission:
    category: Category
    jurisdiction_id: str | None
    description: str
    address: str
    lat: float | None
    lon: float | None
    media_url: str | None
    attributes: dict[str, str]


def coordinate(fields: dict[str, list[str]], name: str) -> float | None:
    text = single(fields, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise Invalid(name, "a WGS84 coordinate in decimal degrees")
    return value


def submission(fields: dict[str, list[str]]) -> Submission:
    """The request's fields, checked as the spec defines them; the event model checks the rest."""
    attributes: dict[str, str] = {}
    for name in fields:
        if (match := ATTRIBUTE.match(name)) is not None:
            code = match.group(1)
            if code not in ATTRIBUTES:
                raise Invalid(name, "no such attribute; see the service definition")
            if (value := single(fields, name)) is not None:
                attributes[code] = value
        elif name not in FIELDS:
            raise Invalid(name, "not a GeoReport v2 field")
    code = single(fields, "service_code")
    if code is None:
        raise Invalid("service_code", "required; see services.json")
    service = category(code, NotFound)
    lat, lon = coordinate(fields, "lat"), coordinate(fields, "long")
    if (lat is None) != (lon is None):
        raise Invalid("lat" if lat is None else "long", "lat and long are sent together")
    address = single(fields, "address_string")
    if single(fields, "address_id") is not None:
        raise Invalid("address_id", "gridgov keeps no master address repository; send"
                      " address_string or lat and long")
    if address is None and lat is None:
        raise Invalid("address_string", "a location is required: address_string, or lat and"
                      " long")
    description = single(fields, "description")
    if description is None:
        raise Invalid("description", "required: say what was seen")
    return Submission(
        category=service, jurisdiction_id=single(fields, "jurisdiction_id"),
        description=description, address=address or f"{lat:.6f}, {lon:.6f}", lat=lat, lon=lon,
        media_url=single(fields, "media_url"), attributes=attributes)


def request_event_id(sub: str, fields: dict[str, list[str]]) -> UUID:
    """The report's event id: a digest of who sent which fields (contact details aside)."""
    kept = sorted((name, value) for name, values in fields.items() if name not in UNKEPT
                  for value in values)
    return uuid5(NAMESPACE, orjson.dumps([sub, kept]).decode())


def possible(service_request_id: str) -> bool:
    """Whether an incident could have this id (any other text names nothing)."""
    return INCIDENT_ID.fullmatch(service_request_id) is not None


def event_id_of(service_request_id: str) -> UUID | None:
    """The event id behind a service request id that a POST minted."""
    if not service_request_id.startswith(MINTED):
        return None
    try:
        return UUID(hex=service_request_id.removeprefix(MINTED))
    except ValueError:
        return None


def report_body(submitted: Submission, *, event_id: UUID, grid: str, now: datetime
                ) -> dict[str, Any]:
    """The `incident.reported` v2 event an app would have sent for the same request."""
    attributes = submitted.attributes
    title = attributes.get("title") or submitted.description.strip().splitlines()[0][:60]
    return {
        "event_id": str(event_id), "event_type": "incident.reported", "schema_version": 2,
        "occurred_at": now.isoformat(), "grid": grid, "aggregate_id": f"{MINTED}{event_id.hex}",
        "aggregate_seq": 0,
        "payload": {
            "category": submitted.category.value, "title": title,
            "description": submitted.description,
            "location": {"address": submitted.address, "lat": submitted.lat,
                         "lon": submitted.lon, **{k: attributes[k] for k in
                                                  ("group", "building", "landmark")
                                                  if k in attributes}},
            "photos": [submitted.media_url] if submitted.media_url else [],
            "patrol_id": attributes.get("patrol_id"),
        },
    }


# -- answers ---------------------------------------------------------------------------------
#: our fields as the spec names them, for error descriptions of a POST
SPEC_FIELDS = {"grid": "jurisdiction_id", "event_type": "api_key", "authorization": "api_key",
               "payload.category": "service_code", "payload.title": "attribute[title]",
               "payload.description": "description", "payload.location.address": "address_string",
               "payload.location.lat": "lat", "payload.location.lon": "long",
               "payload.location.group": "attribute[group]",
               "payload.location.building": "attribute[building]",
               "payload.location.landmark": "attribute[landmark]",
               "payload.patrol_id": "attribute[patrol_id]", "payload.photos": "media_url",
               "payload.photos.0": "media_url", "occurred_at": "requested_datetime"}


def errors_of(refused: Refused) -> tuple[int, list[dict[str, Any]]]:
    """The spec's statuses: 403 for a missing or wrong api_key (or a scope it does not reach),
    404 for what does not exist, 400 for the rest; 408, 429 and 503 stay, so clients retry."""
    status = {401: 403, 403: 403, 404: 404, 408: 408, 429: 429, 503: 503}.get(refused.status,
                                                                              400)
    return status, [{"code": status,
                     "description": f"{SPEC_FIELDS.get(e['field'], e['field'])}: {e['reason']}"}
                    for e in refused.errors]


ITEMS = {"services": "service", "service_requests": "request", "attributes": "attribute",
         "values": "value", "errors": "error"}
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_element(tag: str, value: Any) -> str:
    if value is None:
        return f"<{tag}/>"
    if isinstance(value, list):
        inner = "".join(xml_element(ITEMS[tag], item) for item in value)
    elif isinstance(value, dict):
        inner = "".join(xml_element(k, v) for k, v in value.items())
    elif isinstance(value, bool):
        inner = "true" if value else "false"
    else:
        inner = escape(NOT_XML.sub("\ufffd", str(value)))
    return f"<{tag}>{inner}</{tag}>"


def to_xml(root: str, value: Any) -> bytes:
    """The spec's schemaless XML: no namespace, UTF-8, with its declaration."""
    return f'<?xml version="1.0" encoding="utf-8"?>\n{xml_element(root, value)}'.encode()
