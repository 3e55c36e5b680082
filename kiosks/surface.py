"""The kiosk surface (/api/v1/kiosk): its blueprints, every request signed by a registered device."""

from __future__ import annotations

from sanic.blueprint_group import BlueprintGroup

from backend.surfaces import build_group
from kiosks.auth import verify_signature

# Each module defines `bp`; add a module here to put its routes on this surface.
MODULES = [
    "kiosks.device_views",
    "kiosks.cases_views",
    "kiosks.booking_views",
    "kiosks.payment_views",
]


def group() -> BlueprintGroup:
    return build_group(MODULES, "/api/v1/kiosk", verify_signature)
