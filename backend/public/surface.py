"""The anonymous surface (/api/v1): health, catalog, halls, progress, certificate verification."""

from __future__ import annotations

from sanic.blueprint_group import BlueprintGroup

from backend.surfaces import build_group

# Each module defines `bp`; add a module here to put its routes on this surface.
MODULES = [
    "backend.public.views",
    "backend.public.catalog_views",
    "backend.public.progress_views",
    "backend.public.booking_views",
]


def group() -> BlueprintGroup:
    return build_group(MODULES, "/api/v1")
