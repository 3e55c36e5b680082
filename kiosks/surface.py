"""The kiosk surface (/api/v1/kiosk): its blueprints, every request signed by a registered device."""

from __future__ import annotations

import importlib

from sanic import Blueprint
from sanic.blueprint_group import BlueprintGroup

from kiosks.auth import verify_signature

# Each module defines `bp`; add a module here to put its routes on this surface.
MODULES = [
    "kiosks.device_views",
    "kiosks.cases_views",
    "kiosks.booking_views",
    "kiosks.payment_views",
]


def group() -> BlueprintGroup:
    # Copies: module-level blueprints are shared by every app this process builds (tests build many),
    # and grouping changes a blueprint's prefix in place.
    bps = [bp.copy(bp.name, with_registration=False) for bp in (importlib.import_module(m).bp for m in MODULES)]
    g = Blueprint.group(*bps, url_prefix="/api/v1/kiosk")
    g.middleware(verify_signature, "request")
    return g
