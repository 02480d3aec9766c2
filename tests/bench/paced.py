"""Open-loop load: requests are due on a schedule whatever the answers' delays, and each latency
counts from the moment its request was due, so a stalled server is not hidden by a client
that waits for it (coordinated omission). A fixed set of connections takes the due requests
in turn, like wrk2. Every connection is a phone (tests/bench/phones.py): under the visible
row's load the bench's process took about a fifth of a core of the two the stack runs on,
and py-spy found httpx in most of its samples."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from events.envelope import Role
from tests.bench.phones import Phone, batch_post, get, phone, posts
from tests.stack import RunningStack, a_place, an_incident

POLL = 0.05  # seconds between the supervisor's reads of the query API
#: seconds of load before the probes start: a fresh stack's first second (the producer's
#: first connections, the consumer groups' first fetches) is not the steady state the row is of
WARM_UP = 5.0


@dataclass
class Paced:
    latencies: list[float]  # seconds from due to answered
    started: float  # requests a second the schedule kept up with
    answered: float  # requests a second answered, from the first due to the last answer


def scheduled(rate: float, seconds: float) -> int:
    """How many requests `paced` makes due."""
    return max(1, int(rate * seconds))


async def paced(rate: float, seconds: float, connections: int, url: str,
                send: Callable[[Phone], Awaitable[None]]) -> Paced:
    """`send` due `rate` times a second for `seconds`, over `connections` phones to `url`."""
    latencies: list[float] = []
    due: asyncio.Queue[float | None] = asyncio.Queue()

    async def connection() -> None:
        async with phone(url) as line:
            while (at := await due.get()) is not None:
                await send(line)
                latencies.append(time.perf_counter() - at)

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    first, total = time.perf_counter(), scheduled(rate, seconds)
    for k in range(total):
        at = first + k / rate
        if (delay := at - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        due.put_nowait(at)
    started = total / max(time.perf_counter() - first, 1 / rate)
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    return Paced(latencies, started, total / (time.perf_counter() - first))


async def singles_at(stack: RunningStack, rate: float, seconds: float) -> Paced:
    """`POST /v1/events` one event at a time, `rate` requests a second, 32 phones."""
    grid, url = a_place(), stack.info["ingest_url"]
    requests = iter(posts(url, stack.token(Role.worker, grid),
                          [an_incident(grid) for _ in range(scheduled(rate, seconds))]))

    async def send(line: Phone) -> None:
        await line.send(next(requests))

    return await paced(rate, seconds, 32, url, send)


async def steady_load(stack: RunningStack, events_per_second: float, seconds: float,
                      batch: int) -> Paced:
    """Batches of new incidents into a place of their own at `events_per_second`, 4 phones
    (rates in batches a second)."""
    grid = a_place()
    url, token = stack.info["ingest_url"], stack.token(Role.worker, grid)

    async def send(line: Phone) -> None:
        answer = await line.send(batch_post(url, token, [an_incident(grid) for _ in range(batch)]),
                                 expect=200)
        assert orjson.loads(answer)["accepted"] == batch, answer[:300]

    return await paced(events_per_second / batch, seconds, 4, url, send)


async def visible_under_load(stack: RunningStack, events_per_second: float, seconds: float,
                             probes_per_second: float = 20.0
                             ) -> tuple[list[float], list[float], Paced]:
    """While a steady load runs, phones publish marked incidents into a grid of their own and
    a supervisor lists that grid's chains every 50 ms (the row's resolution) from the oldest
    not yet seen: (publish → 201, publish → visible, the load). One list request a poll,
    however many probes are out, so the probes can be many (a p99 of 600, not of 120, which
    was its second-largest value) without their reads taking the CPU they measure. A probe
    times itself from its own publish: a probe waiting for a free phone is the benchmark's
    queue, not the platform's."""
    grid = a_place()
    acks: list[float] = []
    visible: list[float] = []
    out: dict[str, tuple[str, float]] = {}  # aggregate id -> (report time, publish started)
    load_done = asyncio.Event()

    async def probe(line: Phone) -> None:
        event, started = an_incident(grid, occurred_at=datetime.now(UTC).isoformat()), \
            time.perf_counter()
        out[event["aggregate_id"]] = (event["occurred_at"], started)
        await line.send(posts(url, token, [event])[0])
        acks.append(time.perf_counter() - started)

    async def watch(board: Phone) -> None:
        supervisor = stack.token(Role.supervisor, grid)
        while not (load_done.is_set() and not out):
            if out:
                since = min(at for at, _ in out.values())
                answer = await board.send(get(stack.info["query_url"], supervisor,
                                              "/v1/incidents", {"place": grid, "since": since,
                                                                "limit": "500"}), expect=200)
                seen = time.perf_counter()
                for chain in orjson.loads(answer)["items"]:
                    if (probed := out.pop(chain["incident_id"], None)) is not None:
                        visible.append(seen - probed[1])
            await asyncio.sleep(POLL)

    url, token = stack.info["ingest_url"], stack.token(Role.worker, grid)
    load = asyncio.create_task(steady_load(stack, events_per_second, WARM_UP + seconds, 100))
    await asyncio.sleep(WARM_UP)
    # dialled with the first probe: idle through the warm-up, uvicorn would have hung it up
    async with phone(stack.info["query_url"]) as board:
        watching = asyncio.create_task(watch(board))
        await paced(probes_per_second, seconds, 16, url, probe)
        loaded = await load
        load_done.set()
        async with asyncio.timeout(120):
            await watching
        return acks, visible, loaded
