"""The anonymous surface (/api/v1): health, catalog, halls, progress, certificate verification."""

from __future__ import annotations

import importlib

from sanic import Blueprint
from sanic.blueprint_group import BlueprintGroup

# Each module defines `bp`; add a module here to put its routes on this surface.
MODULES = [
    "backend.public.views",
    "backend.public.catalog_views",
    "backend.public.progress_views",
    "backend.public.booking_views",
]


def group() -> BlueprintGroup:
    # Copies: module-level blueprints are shared by every app this process builds (tests build many),
    # and grouping changes a blueprint's prefix in place.
    bps = [bp.copy(bp.name, with_registration=False) for bp in (importlib.import_module(m).bp for m in MODULES)]
    return Blueprint.group(*bps, url_prefix="/api/v1")
