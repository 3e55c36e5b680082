"""Outbox handlers for tests that run `palmhall worker --import tests.worker_handlers` as a subprocess."""

from __future__ import annotations

import asyncio
import os

from backend.jobs.outbox import Event, registry


def _append(path: str, line: str) -> None:
    # O_APPEND writes of one short line are atomic, so two processes never interleave a line.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@registry.on("test.block")
async def block_on_first_run(event: Event) -> None:
    """The first worker to run this hangs (to be killed); whoever runs it next finishes."""
    log = event.payload["log"]
    first = not os.path.exists(log)
    _append(log, f"start {os.getpid()} {event.id} attempt={event.attempt}")
    if first:
        await asyncio.sleep(120)
    _append(log, f"done {os.getpid()} {event.id}")


@registry.on("test.count")
async def count(event: Event) -> None:
    """Records start and end of each run, so overlap and duplicates can be checked."""
    log = event.payload["log"]
    _append(log, f"start {event.id} {os.getpid()}")
    await asyncio.sleep(0.002)
    _append(log, f"end {event.id} {os.getpid()}")
