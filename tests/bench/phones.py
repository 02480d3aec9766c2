"""Phones for every request the bench times: each holds one keep-alive HTTP/1.1 connection
and sends requests encoded before the clock started, or with orjson as they fall due.

On 2 cores the bench shares the CPU with the whole stack, and httpx spent more CPU per
request (~2 ms) than ingest did serving it (~1.2 ms), so the singles rows measured the
client as much as the server (issue 9). A phone writes the request bytes and reads the status
line, the headers and a Content-Length body (~0.08 ms a request); every answer's status is
still checked. A connection the server closes fails the bench rather than being redialled:
the rows keep every phone busy, well inside uvicorn's keep-alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson


def _head(method: str, url: str, target: str, token: str) -> bytes:
    return (f"{method} {target} HTTP/1.1\r\nhost: {urlsplit(url).netloc}\r\n"
            f"authorization: Bearer {token}\r\n").encode()


def _post(head: bytes, body: Any) -> bytes:
    encoded = orjson.dumps(body)
    return head + b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(
        encoded) + encoded


def posts(url: str, token: str, events: list[dict[str, Any]]) -> list[bytes]:
    """Each event's whole `POST /v1/events` request, as the wire carries it."""
    head = _head("POST", url, "/v1/events", token)
    return [_post(head, e) for e in events]


def batch_post(url: str, token: str, events: list[dict[str, Any]]) -> bytes:
    """One whole `POST /v1/events/batch` request of these events."""
    return _post(_head("POST", url, "/v1/events/batch", token), {"events": events})


def get(url: str, token: str, path: str, params: dict[str, str]) -> bytes:
    """A whole `GET` request, as the wire carries it."""
    return _head("GET", url, f"{path}?{urlencode(params)}", token) + b"\r\n"


class Phone:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, request: bytes, expect: int = 201) -> bytes:
        """Send one request and read its whole answer, the body returned; any status but
        `expect` fails."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        length = next(int(f.split(":", 1)[1]) for f in fields
                      if f.lower().startswith("content-length:"))  # uvicorn never chunks these
        body = await self.reader.readexactly(length)
        status = int(status_line.split(" ", 2)[1])
        assert status == expect, f"{status_line}: {body[:300]!r}"
        return body


@asynccontextmanager
async def phone(url: str) -> AsyncIterator[Phone]:
    """A phone connected to the service at `url` for the block (its token is in each request)."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        yield Phone(reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()
