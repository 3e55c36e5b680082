"""The event catalogue: every outbox topic, as the package that emits it lists it in its `events.py`.

Each entry says what the payload holds (ids, codes and times, never personal data), which packages
react to it, and who hears about it: a resident-visible topic must have a notification template.
`tests/test_event_catalogue.py` holds the code to this list: an emitted topic missing here, a handler
not declared, or a resident-visible topic without a template fails the suite.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent.parent
# The top-level packages whose `events.py` files make the catalogue (the layout of docs/architecture.md).
PACKAGES = ("backend", "payments", "notifications", "miniprogram_api", "kiosks")

Audience = Literal["resident", "staff", "internal"]


@dataclass(frozen=True)
class Topic:
    name: str
    payload: tuple[str, ...]
    # Packages whose handlers react (hall_sync, notifications, payments, cases, ...), by package name.
    subscribers: tuple[str, ...] = ()
    # resident: the resident concerned is told (inbox and push); staff: the hall's staff inbox; internal: no one.
    audience: Audience = "internal"
    about: str = ""
    module: str = ""  # the events module that lists it, filled in by `catalogue()`


def event_modules() -> list[str]:
    """Dotted names of every package's `events.py`, found on disk so a new package's list is not forgotten."""
    names: list[str] = []
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("events.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "static" in parts or "templates" in parts:
                continue
            names.append(".".join(parts))
    return names


def catalogue() -> dict[str, Topic]:
    """Every topic by name; a topic listed by two packages is an error (only its emitter lists it)."""
    found: dict[str, Topic] = {}
    for name in event_modules():
        module = importlib.import_module(name)
        for topic in getattr(module, "CATALOGUE", ()):
            if topic.name in found:
                raise ValueError(f"{topic.name!r} is listed by {found[topic.name].module} and by {name}")
            found[topic.name] = replace(topic, module=name)
    return found
