"""One blueprint group per audience, built the same way for each: its modules' routes under one
prefix, with the audience's authentication run once at the group."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence

from sanic import Blueprint, Request
from sanic.blueprint_group import BlueprintGroup


def build_group(modules: Sequence[str], url_prefix: str,
                authenticate: Callable[[Request], Awaitable[None]] | None = None) -> BlueprintGroup:
    # Copies: module-level blueprints are shared by every app this process builds (tests build many),
    # and grouping changes a blueprint's prefix in place.
    bps = [bp.copy(bp.name, with_registration=False) for bp in (importlib.import_module(m).bp for m in modules)]
    group = Blueprint.group(*bps, url_prefix=url_prefix)
    if authenticate is not None:
        group.middleware(authenticate, "request")
    return group
