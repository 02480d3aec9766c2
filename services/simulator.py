"""Plays the people of the grids: workers' patrols and reports, then every matter's lifecycle.

Reports and patrols go through the ingest API as phones send them; the lifecycle goes through
POST /v1/commands as grid chiefs, workers, mediators and supervisors would: assigned,
accepted, resolved or mediated, verified; some reworked, reopened, escalated, rejected as
duplicates, and a few given a deadline nobody meets, so the SLA clock has work.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from events.envelope import Role
from services import auth
from services.places import DEMO_GRIDS
from services.settings import Settings

FINDINGS = [
    ("safety_hazard", "楼道堆放杂物", "单元楼道堆放纸箱和电动车，阻塞消防通道。"),
    ("environment", "垃圾未及时清运", "村口垃圾桶满溢，气味较大，村民反映强烈。"),
    ("public_order", "夜间噪音扰民", "广场舞音响音量过大，影响周边住户休息。"),
    ("dispute", "邻里宅基地纠纷", "两户因宅基地边界发生争执，需要调解。"),
    ("facilities", "路灯损坏", "主干道三盏路灯不亮，夜间出行不便。"),
    ("epidemic_prevention", "返乡人员登记", "外地返乡人员需登记健康信息。"),
    ("other", "独居老人需关照", "独居老人行动不便，需要志愿者定期探访。"),
]
CHECKPOINTS = ["村委会", "文化广场", "老年活动中心", "3 号院", "河堤", "小学门口", "菜市场"]


def worker_of(grid: str) -> str:
    return "w-" + grid.replace("/", "-")


PARTIES = [("张建国", "13807320001"), ("李秀英", None), ("王德明", "13907320002"), ("刘桂兰", None)]


def app_events(rng: random.Random, now: datetime) -> Iterator[dict[str, Any]]:
    """An endless stream of what grid workers' phones publish: a patrol, sometimes a report,
    of each kind of finding in turn (so a short run shows every kind, disputes included)."""
    grids = sorted(DEMO_GRIDS)
    findings = itertools.cycle(FINDINGS)
    while True:
        grid = rng.choice(grids)
        started = now - timedelta(minutes=rng.randint(30, 180))
        patrol_id = f"patrol-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
        finding = next(findings) if rng.random() < 0.4 else None
        incident_id = f"inc-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
        stops = rng.sample(CHECKPOINTS, 3)
        yield {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_type": "patrol.logged", "schema_version": 1,
            "occurred_at": (started + timedelta(minutes=60)).isoformat(),
            "grid": grid, "aggregate_id": patrol_id, "aggregate_seq": 0,
            "payload": {
                "started_at": started.isoformat(),
                "ended_at": (started + timedelta(minutes=60)).isoformat(),
                "route": [{"name": s, "at": (started + timedelta(minutes=15 * i)).isoformat()}
                          for i, s in enumerate(stops)],
                "findings": [{"note": finding[1], "incident_id": incident_id}] if finding else [],
            },
        }
        if finding is None:
            continue
        category, title, description = finding
        address = f"{''.join(DEMO_GRIDS[grid][2:])} {stops[1]}"
        if category == "dispute":
            event_type, version, payload = "dispute.reported", 1, {
                "kind": rng.choice(["neighbour", "family", "land", "debt"]),
                "parties": [{"name": n, "phone": p} for n, p in rng.sample(PARTIES, 2)],
                "summary": description, "location": {"description": address},
                "patrol_id": patrol_id}
        else:
            # the new app (structured places) has reached every other grid: the log holds both
            version = 2 if grids.index(grid) % 2 else 1
            place = {"address": address, "landmark": stops[1]} if version == 2 else \
                {"description": address}
            event_type, payload = "incident.reported", {
                "category": category, "title": title, "description": description,
                "location": place, "patrol_id": patrol_id}
        yield {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_type": event_type, "schema_version": version,
            "occurred_at": (started + timedelta(minutes=30)).isoformat(),
            "grid": grid, "aggregate_id": incident_id, "aggregate_seq": 0, "payload": payload,
        }


@dataclass
class Matter:
    """What the simulated people know of one matter, and the command they are retrying."""

    incident_id: str
    grid: str
    kind: str
    stage: str = "reported"
    retrying: dict[str, Any] | None = None


Step = tuple[str, dict[str, Any]]  # (the role acting, the command they send)


def owner_of(grid: str, kind: str) -> tuple[str, Role]:
    """Who owns a matter: the grid's worker, or its people's mediator for a dispute."""
    if kind == "dispute":
        return "m-" + grid.replace("/", "-"), Role.mediator
    return worker_of(grid), Role.worker


def next_step(matter: Matter, rng: random.Random, now: datetime) -> Step | None:
    """Who acts on a matter next and what they ask for; None when its story is over."""
    owner_id, owner = owner_of(matter.grid, matter.kind)
    worker = {"id": owner_id, "role": owner.value}
    match matter.stage:
        case "reported" if rng.random() < 0.03:
            return "grid_chief", {"type": "reject", "reason": "duplicate", "note": "重复上报"}
        case "reported":
            late = rng.random() < 0.05  # a few given a deadline nobody will meet
            deadline = {"deadline": (now + timedelta(seconds=30)).isoformat()} if late else {}
            return "grid_chief", {"type": "assign", "assignee": worker, **deadline}
        case "assigned":
            return owner, {"type": "accept"}
        case "owned" if rng.random() < 0.08:
            return "grid_chief", {"type": "escalate", "reason": "涉及多个部门，需社区协调"}
        case "owned" if matter.kind == "dispute":
            return owner, {"type": "mediate", "outcome": "succeeded",
                              "agreement": "双方签订调解协议"}
        case "owned":
            return owner, {"type": "resolve", "measures": "现场处置并联系相关单位",
                              "outcome": "问题已解决"}
        case "resolved" if rng.random() < 0.12:
            return "supervisor", {"type": "verify", "verdict": "rejected", "note": "现场复核未达标"}
        case "resolved":
            return "supervisor", {"type": "verify", "verdict": "accepted",
                                  "satisfaction": rng.choice([3, 4, 5, 5, 5])}
        case "closed" if rng.random() < 0.05:
            return "supervisor", {"type": "reopen", "reason": "群众反映问题复发"}
    return None


AFTER = {"assign": "assigned", "accept": "owned", "escalate": "owned", "resolve": "resolved",
         "mediate": "resolved", "reopen": "owned", "reject": "done"}


def advanced(step: dict[str, Any]) -> str:
    if step["type"] == "verify":
        return "closed" if step["verdict"] == "accepted" else "owned"
    return AFTER[step["type"]]


class People:
    """The tokens of everyone who acts in the demo places."""

    def __init__(self, settings: Settings) -> None:
        def token(sub: str, role: Role, scope: str) -> str:
            return auth.issue(settings, sub=sub, role=role, scope=[scope])

        self.tokens = {
            (grid, role): token(sub, role, scope) for grid in DEMO_GRIDS
            for role, sub, scope in (
                (Role.worker, worker_of(grid), grid),
                (Role.mediator, owner_of(grid, "dispute")[0], grid),
                (Role.grid_chief, "gc-" + grid.replace("/", "-"), grid),
                (Role.supervisor, "sv-" + grid.rsplit("/", 2)[0].replace("/", "-"),
                 grid.rsplit("/", 2)[0]))
        }

    def headers(self, grid: str, role: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[grid, Role(role)]}"}


async def advance(client: httpx.AsyncClient, people: People, matters: dict[str, Matter],
                  rng: random.Random, budget: int) -> None:
    """Move the `budget` oldest matters one step each, all at once, as many people would who
    take the oldest matter first: every matter's story runs on to its end."""
    chosen = list(matters.values())[:budget]
    for matter in chosen:
        if matter.retrying is None:
            step = next_step(matter, rng, datetime.now(UTC))
            if step is None:
                del matters[matter.incident_id]
                continue
            role, command = step
            matter.retrying = {"role": role, "body": {
                "command_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "incident_id": matter.incident_id,
                "occurred_at": datetime.now(UTC).isoformat(), "command": command}}
    outcomes = await asyncio.gather(*(send(client, people, m, m.retrying) for m in chosen
                                      if m.retrying is not None))
    for matter, outcome in outcomes:
        if outcome == "refused":
            del matters[matter.incident_id]  # this story ends here


async def send(client: httpx.AsyncClient, people: People, matter: Matter,
               attempt: dict[str, Any]) -> tuple[Matter, str]:
    """Send a matter's command; an answer not in yet leaves it to retry with the same id."""
    try:
        answer = await client.post("/v1/commands", json=attempt["body"],
                                   headers=people.headers(matter.grid, attempt["role"]))
    except httpx.HTTPError:
        return matter, "retry"  # a weak network: the same command id goes again next time
    if answer.status_code in (202, 404, 503):
        return matter, "retry"  # not decided yet, or the report is not in the chain yet
    step, matter.retrying = attempt["body"]["command"], None
    if answer.status_code != 200:
        return matter, "refused"
    matter.stage = advanced(step)
    return matter, "advanced"


DEEDS = [("environment_work", "清扫楼道并分类垃圾"), ("public_welfare", "参加义务植树")]


async def households(client: httpx.AsyncClient, people: People, rng: random.Random,
                     claimed: list[tuple[float, str, str, str]]) -> None:
    """积分制: now and then a household's deed is reported by its grid worker, and validated
    by the grid chief on a later tick (once the ledger holds the claim); hours of
    volunteering are awarded directly."""
    now = datetime.now(UTC)

    async def command(grid: str, account: str, step: dict[str, Any]) -> None:
        await client.post("/v1/points/commands", headers=people.headers(grid, "grid_chief"),
                          json={"command_id": str(uuid.UUID(int=rng.getrandbits(128),
                                                            version=4)),
                                "account_id": account, "grid": grid,
                                "occurred_at": now.isoformat(), "command": step})

    grid = rng.choice(sorted(DEMO_GRIDS))
    account = f"hh-{grid.replace('/', '-')}-{rng.randint(1, 12):02d}"
    try:
        while claimed and claimed[0][0] < time.monotonic() - 2:  # the ledger holds it by now
            _, earlier_grid, earlier_account, earlier = claimed.pop(0)
            await command(earlier_grid, earlier_account, {"type": "approve",
                                                          "claim_id": earlier})
        if rng.random() < 0.3:
            rule, evidence = rng.choice(DEEDS)
            claim_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            claim = {
                "event_id": claim_id,
                "event_type": "points.claimed", "schema_version": 1,
                "occurred_at": now.isoformat(), "grid": grid, "aggregate_id": account,
                "aggregate_seq": 0, "payload": {"rule": rule, "quantity": 1,
                                                "evidence": evidence}}
            answer = await client.post("/v1/events", json=claim,
                                       headers=people.headers(grid, "worker"))
            if answer.status_code == 201:
                claimed.append((time.monotonic(), grid, account, claim_id))
        elif rng.random() < 0.2:
            await command(grid, account, {"type": "award", "rule": "volunteer_hour",
                                          "quantity": rng.randint(1, 3),
                                          "source_id": f"activity-{rng.getrandbits(32):08x}"})
    except httpx.HTTPError:
        pass  # the next tick carries on


async def simulate(settings: Settings, ingest_url: str, *, rate: float, seconds: float | None,
                   seed: int | None = None) -> int:
    """Post events at about `rate` per second and move matters along; returns events accepted."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    people = People(settings)
    stream = app_events(rng, datetime.now(UTC))
    matters: dict[str, Matter] = {}
    claimed: list[tuple[float, str, str, str]] = []  # (when, grid, account, claim) to validate
    accepted, started = 0, time.monotonic()
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        while seconds is None or time.monotonic() - started < seconds:
            tick = time.monotonic()
            by_grid: dict[str, list[dict[str, Any]]] = {}
            for _ in range(max(1, int(rate))):
                event = next(stream)
                by_grid.setdefault(event["grid"], []).append(event)
            for grid, events in by_grid.items():
                try:
                    answer = await client.post("/v1/events/batch", json={"events": events},
                                               headers=people.headers(grid, "worker"))
                except httpx.HTTPError:
                    continue  # a phone on a weak network: the next tick carries on
                if answer.status_code != 200:
                    continue
                accepted += answer.json()["accepted"]
                for result in answer.json()["results"]:
                    event = events[result["index"]]
                    if result["status"] == 201 and event["event_type"].endswith(".reported"):
                        matters[event["aggregate_id"]] = Matter(
                            event["aggregate_id"], grid, event["event_type"].split(".")[0])
            # a matter takes five or six steps and about one event in four is a report:
            # twice the rate in steps a tick keeps up, so the backlog does not grow all day
            await advance(client, people, matters, rng, budget=max(2, 2 * int(rate)))
            for _ in range(max(1, int(rate) // 10)):
                await households(client, people, rng, claimed)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    return accepted
