"""Plays grid workers' apps: patrols and incident reports across real places, in Chinese."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
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


def app_events(rng: random.Random, now: datetime) -> Iterator[dict[str, Any]]:
    """An endless stream of what grid workers' phones publish: a patrol, sometimes a report."""
    grids = sorted(DEMO_GRIDS)
    while True:
        grid = rng.choice(grids)
        started = now - timedelta(minutes=rng.randint(30, 180))
        patrol_id = f"patrol-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
        category, title, description = rng.choice(FINDINGS)
        reported = rng.random() < 0.4
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
                "findings": [{"note": title, "incident_id": incident_id}] if reported else [],
            },
        }
        if reported:
            yield {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "event_type": "incident.reported", "schema_version": 1,
                "occurred_at": (started + timedelta(minutes=30)).isoformat(),
                "grid": grid, "aggregate_id": incident_id, "aggregate_seq": 0,
                "payload": {
                    "category": category, "title": title, "description": description,
                    "location": {"description": f"{''.join(DEMO_GRIDS[grid][2:])} {stops[1]}"},
                    "patrol_id": patrol_id,
                },
            }


async def simulate(settings: Settings, ingest_url: str, *, rate: float, seconds: float | None,
                   seed: int | None = None) -> int:
    """Post events at about `rate` per second in small batches; returns how many were accepted."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    tokens = {
        grid: auth.issue(settings, sub=worker_of(grid), role=Role.worker, scope=[grid])
        for grid in DEMO_GRIDS
    }
    stream = app_events(rng, datetime.now(UTC))
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
                    answer = await client.post(
                        "/v1/events/batch", json={"events": events},
                        headers={"authorization": f"Bearer {tokens[grid]}"})
                    if answer.status_code == 200:
                        accepted += answer.json()["accepted"]
                except httpx.HTTPError:
                    pass  # a phone on a weak network: the next tick carries on
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    return accepted
