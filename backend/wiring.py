"""Modules that register outbox handlers and periodic tasks; imported by every process."""

from __future__ import annotations

import importlib

HANDLER_MODULES: list[str] = [
    "backend.booking.handlers",
    "backend.cases.handlers",
    "payments.handlers",
    "backend.hall_sync.handlers",
    "notifications.handlers",
]


def load(extra: list[str] | None = None) -> None:
    for name in [*HANDLER_MODULES, *(extra or [])]:
        importlib.import_module(name)
