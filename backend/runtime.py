"""The stores and settings of this process, for code that runs outside a request (handlers, periodic tasks)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from backend.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    redis: Redis


_current: Runtime | None = None


def set_current(runtime: Runtime | None) -> None:
    """Called by `serve` and `worker` at start-up (and by tests)."""
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("palmhall runtime not started (set_current was not called)")
    return _current
