"""faust's Kafka transport with fetches that come back promptly (broker URL `gridgov://`).

faust-streaming 0.15 hard-codes `fetch_max_wait_ms=1500` for its consumer, and the embedded
Tansu broker answers a held fetch late when records arrive meanwhile, so every decision
lagged about 0.75 s. Here a decider's fetches wait 50 ms while commands come, and longer once
it has had none for a second (events.log.FetchPace). The deciders use it; projectors consume
without faust (projections/worker.py). Registered through faust's own `faust.transports`
entry point, not by patching faust.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver
from faust.types.auth import CredentialsT

from events.log import (
    FETCH_MAX_WAIT_MS,
    HEARTBEAT_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    FetchPace,
    KafkaAuth,
    current_auth,
)


class _PromptConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        self.pace = FetchPace(FETCH_MAX_WAIT_MS)
        return consumer

    async def _fetch_records(self, consumer: Any, *args: Any, **kwargs: Any) -> Any:
        records = await super()._fetch_records(consumer, *args, **kwargs)
        self.pace.read(consumer, bool(records))
        return records


class _PromptConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = _PromptConsumer


def credentials(auth: KafkaAuth) -> CredentialsT | None:
    """The principal of events.log's clients, for faust's consumer and producer too."""
    if auth.security_protocol == "PLAINTEXT":
        return None
    context = auth.ssl_context()
    if auth.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=auth.username, password=auth.password,
                                     mechanism=auth.sasl_mechanism, ssl_context=context)
    return faust.SSLCredentials(context)


def app(name: str, bootstrap: str, home: Path) -> faust.App:
    """A faust app on this transport, as the deciders run one: raw bytes in, no web server,
    no topics declared by faust, the process's own principal. Its data directory (faust makes
    one even for in-memory tables) goes in `home`, not wherever the process was started."""
    datadir = home / f"{name}-data"
    datadir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level
    return faust.App(
        name, broker=f"gridgov://{bootstrap}", store="memory://", web_enabled=False,
        datadir=datadir,
        topic_disable_leader=True, topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_MS / 1000,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_MS / 1000,
        broker_credentials=credentials(current_auth()),
    )
