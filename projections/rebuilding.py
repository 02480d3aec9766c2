"""Whether this task is rebuilding a read model from offset 0 into a schema of its own
(`replay`), rather than keeping the live one up to date.

A rebuild announces nothing on the live channel (a supervisor's ticker would show the whole
history as news), and it holds its rate rollups back to add them up once, at its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_rebuilding: ContextVar[bool] = ContextVar("rebuilding", default=False)


@contextmanager
def rebuilding() -> Iterator[None]:
    token = _rebuilding.set(True)
    try:
        yield
    finally:
        _rebuilding.reset(token)


def is_rebuilding() -> bool:
    return _rebuilding.get()
