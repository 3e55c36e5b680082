"""The mini-program surface (/api/v1/mp): its blueprints, authenticated once at the group."""

from __future__ import annotations

import importlib

from sanic import Blueprint
from sanic.blueprint_group import BlueprintGroup

from miniprogram_api.auth import authenticate_resident

# Each module defines `bp`; add a module here to put its routes on this surface.
MODULES = [
    "miniprogram_api.identity_views",
    "miniprogram_api.cases_views",
    "miniprogram_api.booking_views",
    "miniprogram_api.payment_views",
    "miniprogram_api.notify_views",
]


def group() -> BlueprintGroup:
    # Copies: module-level blueprints are shared by every app this process builds (tests build many),
    # and grouping changes a blueprint's prefix in place.
    bps = [bp.copy(bp.name, with_registration=False) for bp in (importlib.import_module(m).bp for m in MODULES)]
    g = Blueprint.group(*bps, url_prefix="/api/v1/mp")
    g.middleware(authenticate_resident, "request")
    return g
