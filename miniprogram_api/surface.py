"""The mini-program surface (/api/v1/mp): its blueprints, authenticated once at the group."""

from __future__ import annotations

from sanic.blueprint_group import BlueprintGroup

from backend.surfaces import build_group
from miniprogram_api.auth import authenticate_resident

# Each module defines `bp`; add a module here to put its routes on this surface.
MODULES = [
    "miniprogram_api.identity_views",
    "miniprogram_api.cases_views",
    "miniprogram_api.booking_views",
    "miniprogram_api.payment_views",
    "miniprogram_api.notify_views",
    "miniprogram_api.kiosk_code_views",
]


def group() -> BlueprintGroup:
    return build_group(MODULES, "/api/v1/mp", authenticate_resident)
