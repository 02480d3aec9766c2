"""A matter as a GeoReport v2 service request: pure functions of its timeline, no I/O.

Status from the chain's stage (closed once closed or rejected), status notes from the last
step that changed the chain, the agency from the owner's unit and role (never a person), the
expected time from the SLA deadline. What a resident could be recognised by is masked: phone
and ID numbers, e-mail addresses, room numbers, surnames before a form of address (张先生 ->
某先生), a dispute's parties by name and phone; coordinates are rounded to about 100 m. A
name said without a form of address cannot be told from other words, and stays.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from events.dispute import DisputeReported, MediationRecorded
from events.envelope import Event, Role
from events.incident import (
    Category,
    IncidentAccepted,
    IncidentAssigned,
    IncidentClosed,
    IncidentEscalated,
    IncidentExtended,
    IncidentOverdue,
    IncidentRejected,
    IncidentReopened,
    IncidentReportedV2,
    IncidentResolved,
    IncidentResumed,
    IncidentReturned,
    IncidentReworkRequested,
    IncidentSuspended,
    IncidentTransferred,
    IncidentVerified,
)
from projections.five_have import Chain, evolve, fold, in_order
from services.errors import Invalid
from services.open311_terms import LANGUAGES, LEVELS, LOCAL, ROLES, SERVICES, WINDOW, Rules, notice
from services.places import DEMO_GRIDS


def listed(values: list[str] | None) -> list[str]:
    """A parameter declared several times, comma delimited, or both; empty ones dropped."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def moment(name: str, text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise Invalid(name, "a w3 datetime with its timezone, e.g. 2010-01-01T00:00:00Z")
    return at


def window(start_date: str | None, end_date: str | None, *, now: datetime
           ) -> tuple[datetime, datetime]:
    """The requested_datetime range: the last 90 days unless given; never wider than 90 days."""
    start = moment("start_date", start_date) if start_date else None
    end = moment("end_date", end_date) if end_date else None
    try:
        if start is None and end is None:
            return now - WINDOW, now
        if start is None and end is not None:
            return end - WINDOW, end
        if start is not None and end is None:
            return start, start + WINDOW
    except OverflowError:
        raise Invalid("end_date" if end_date else "start_date", "out of range") from None
    assert start is not None and end is not None  # noqa: S101 - the cases above
    if end < start:
        raise Invalid("end_date", "is before start_date")
    if end - start > WINDOW:
        raise Invalid("end_date", "a search may not span more than 90 days")
    return start, end


OPEN = ("reported", "assigned", "owned", "resolved", "verified", "suspended")
CLOSED = ("closed", "rejected")


def stages(statuses: list[str]) -> list[str] | None:
    """The chain stages a status filter selects; None: all."""
    if not statuses:
        return None
    wrong = [s for s in statuses if s not in ("open", "closed")]
    if wrong:
        raise Invalid("status", f"open or closed, not {wrong[0]!r}")
    return [*(OPEN if "open" in statuses else ()), *(CLOSED if "closed" in statuses else ())]


def status_of(stage: str) -> str:
    """closed once closed after supervision or rejected at intake; open until then."""
    return "closed" if stage in CLOSED else "open"


def last_transition(incident_id: str, events: list[Event[Any]]) -> Event[Any] | None:
    """The last event that changed the chain (a step its stage did not allow changed nothing)."""
    chain, last = Chain(incident_id), None
    for event in in_order(incident_id, events):
        after = evolve(chain, event)
        if replace(after, last_seq=chain.last_seq) != chain:
            last = event
        chain = after
    return last


REJECTED = {"duplicate": ("重复事项", "a duplicate"), "invalid": ("无效", "invalid"),
            "not_ours": ("不属本级职责", "not ours to handle")}
MEDIATED = {"succeeded": ("调解成功", "mediated successfully"),
            "failed": ("调解未成功", "mediation failed"), "continuing": ("调解中", "in mediation")}


def status_note(event: Event[Any], lang: str) -> str:
    """Why the status is what it is: the last step, in the reader's language, with the reason
    the official gave (masked by the caller)."""
    i = 0 if lang == "zh" else 1

    def said(zh: str, en: str, reason: str | None = None) -> str:
        head = (zh, en)[i]
        return f"{head}{'：' if i == 0 else ': '}{reason}" if reason else head

    match event.payload:
        case IncidentReportedV2() | DisputeReported():
            return said("已上报，待受理", "reported, awaiting acceptance")
        case IncidentAssigned(level=level):
            return said(f"已派遣（{LEVELS[level][0]}级）", f"assigned at {LEVELS[level][1]} level")
        case IncidentAccepted():
            return said("责任人已受理", "accepted by its owner")
        case IncidentTransferred(reason=reason):
            return said("已转办", "transferred", reason)
        case IncidentReturned(reason=reason):
            return said("已退回重新派遣", "returned for dispatch", reason)
        case IncidentEscalated(to_level=level, reason=reason):
            return said(f"已上报{LEVELS[level][0]}", f"escalated to {LEVELS[level][1]}", reason)
        case IncidentExtended(reason=reason):
            return said("已延期", "deadline extended", reason)
        case IncidentSuspended(reason=reason):
            return said("已挂账", "suspended", reason)
        case IncidentResumed():
            return said("已恢复办理", "resumed")
        case IncidentResolved(outcome=outcome):
            return said("已解决", "resolved", outcome)
        case MediationRecorded(outcome=outcome, agreement=agreement):
            return said(*MEDIATED[outcome], agreement)
        case IncidentVerified():
            return said("督查通过", "verified")
        case IncidentReworkRequested(reason=reason):
            return said("督查未通过，返工", "sent back for rework", reason)
        case IncidentClosed():
            return said("已办结", "closed")
        case IncidentReopened(reason=reason):
            return said("已重新办理", "reopened", reason)
        case IncidentRejected(reason=reason, duplicate_of=duplicate):
            return said("不予受理", "not accepted", REJECTED[reason][i] +
                        (f" ({duplicate})" if duplicate else ""))
        case IncidentOverdue():
            return said("已超期", "overdue")
    return said("巡查发现", "found on patrol")


def agency(chain: Chain, lang: str) -> str | None:
    """The owner's unit and role (or the assignee's, until someone owns it); never a person."""
    who = chain.owner or chain.assignee
    if who is None or chain.grid is None:
        return None
    zh, en, depth = LEVELS[chain.level]
    path = chain.grid.split("/")[:depth]
    names = DEMO_GRIDS.get("/".join(chain.grid.split("/")[:4]))
    unit = "".join(names[:depth]) if names else f"{'/'.join(path)} ({zh if lang == 'zh' else en})"
    role = ROLES.get(Role(who[1]), (who[1], who[1]))[0 if lang == "zh" else 1]
    return f"{unit} {role}"


SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
            "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷"
            "侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
PERSONAL = (
    (re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])"), "***"),  # 身份证号
    (re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?!\d)"), "***"),  # mobile
    (re.compile(r"(?<!\d)0\d{2,3}[- ]?\d{7,8}(?!\d)"), "***"),  # landline
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "***"),  # e-mail
    (re.compile(r"\d+\s*(?:室|号房)"), "***室"),  # a household's door
    (re.compile(f"[{SURNAMES}](?=先生|女士|小姐|阿姨|大爷|大妈|大娘|大哥|大姐|师傅|老师|奶奶|爷爷"
                "|叔叔|婆婆|老板)"), "某"),
)


def mask(text: str, known: tuple[str, ...] = ()) -> str:
    """The text with what could identify a resident replaced."""
    for said in sorted((k for k in known if len(k) >= 2), key=len, reverse=True):
        text = text.replace(said, "某某")
    for pattern, instead in PERSONAL:
        text = pattern.sub(instead, text)
    return text


def service_request(incident_id: str, timeline: list[Event[Any]], rules: Rules, lang: str
                    ) -> dict[str, Any]:
    """One matter as a GeoReport v2 service request."""
    chain = fold(incident_id, timeline)
    report = next(e for e in in_order(incident_id, timeline)
                  if isinstance(e.payload, IncidentReportedV2 | DisputeReported)
                  and e.aggregate_id == incident_id)
    payload = report.payload
    last = last_transition(incident_id, timeline) or report
    if isinstance(payload, DisputeReported):
        # sealed parties were said as 某某 in the free text at ingest; older ones are text
        known = tuple(v for p in payload.parties for v in (p.name, p.phone) if isinstance(v, str))
        text, address, photos = payload.summary, payload.location.description, []
    else:
        known, address, photos = (), payload.location.address, payload.photos
        text = payload.description if payload.description.startswith(payload.title) else \
            f"{payload.title}\n{payload.description}"
    where = payload.location
    service = Category(chain.category)
    return {
        "service_request_id": incident_id,
        "status": status_of(chain.stage),
        "status_notes": mask(status_note(last, lang), known),
        "service_name": SERVICES[service].name[LANGUAGES.index(lang)],
        "service_code": service.value,
        "description": mask(text, known)[:4000],
        "agency_responsible": agency(chain, lang),
        "service_notice": notice(rules, service, chain.level, lang),
        "requested_datetime": w3(report.occurred_at),
        "updated_datetime": w3(chain.closed_at or last.occurred_at),
        "expected_datetime": w3(chain.deadline) if chain.deadline else None,
        "address": mask(address, known),
        "address_id": None,
        "zipcode": None,
        # about 100 m: enough to find the matter's street, not a household's door
        "lat": round(where.lat, 3) if where.lat is not None else None,
        "long": round(where.lon, 3) if where.lon is not None else None,
        "media_url": next((p for p in photos if p.startswith(("http://", "https://"))), None),
    }


def w3(at: datetime) -> str:
    return at.astimezone(LOCAL).isoformat(timespec="seconds")
