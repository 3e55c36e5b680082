"""Demo data for `make run`: loaded once, recorded in palmhall_meta so a rerun adds nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from backend import db
from backend.audit import service as audit
from backend.meta import Meta
from backend.settings import Settings

MARKER = "demo_data"

Loader = Callable[[Settings], Awaitable[None]]
# (name, loader, what it prints for the person running `make run`)
Step = tuple[str, Loader, str]
STEPS: list[Step] = []


def step(name: str, description: str) -> Callable[[Loader], Loader]:
    def register(fn: Loader) -> Loader:
        STEPS.append((name, fn, description))
        return fn

    return register


async def load(settings: Settings) -> bool:
    """Run every step not yet recorded; returns False when there was nothing to do."""
    marker = await Meta.get_or_none(key=MARKER)
    done: list[str] = list(marker.value) if marker else []
    todo = [s for s in STEPS if s[0] not in done]
    if marker is not None and not todo:
        return False
    for name, fn, _ in todo:
        await fn(settings)
        done.append(name)
    async with db.transaction() as tx:
        await Meta.update_or_create(key=MARKER, defaults={"value": done}, using_db=tx)
        await audit.record(using_db=tx, actor_kind="system", actor_id="demo", action="demo.loaded",
                           details={"steps": [s[0] for s in todo]})
    return True


def describe() -> list[str]:
    return [desc for _, _, desc in STEPS]
