"""The counter surface (/api/v1/staff): its blueprints, authenticated once at the group."""

from __future__ import annotations

import importlib

from sanic import Blueprint
from sanic.blueprint_group import BlueprintGroup

from backend.counter.auth import authenticate_staff

# Each module defines `bp`; add a module here to put its routes on this surface.
MODULES = [
    "backend.counter.identity_views",
    "backend.counter.scan_views",
    "backend.counter.cases_views",
    "backend.counter.booking_views",
    "backend.counter.calendar_views",
    "backend.counter.payment_views",
    "backend.counter.sync_views",
    "backend.counter.notify_views",
]


def group() -> BlueprintGroup:
    # Copies: module-level blueprints are shared by every app this process builds (tests build many),
    # and grouping changes a blueprint's prefix in place.
    bps = [bp.copy(bp.name, with_registration=False) for bp in (importlib.import_module(m).bp for m in MODULES)]
    g = Blueprint.group(*bps, url_prefix="/api/v1/staff")
    g.middleware(authenticate_staff, "request")
    return g
