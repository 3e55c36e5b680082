"""The counter surface (/api/v1/staff): its blueprints, authenticated once at the group."""

from __future__ import annotations

from sanic.blueprint_group import BlueprintGroup

from backend.counter.auth import authenticate_staff
from backend.surfaces import build_group

# Each module defines `bp`; add a module here to put its routes on this surface.
MODULES = [
    "backend.counter.identity_views",
    "backend.counter.scan_views",
    "backend.counter.cases_views",
    "backend.counter.booking_views",
    "backend.counter.calendar_views",
    "backend.counter.hall_views",
    "backend.counter.payment_views",
    "backend.counter.sync_views",
    "backend.counter.notify_views",
    "backend.counter.console_views",
    "backend.counter.dashboard_views",
]


def group() -> BlueprintGroup:
    return build_group(MODULES, "/api/v1/staff", authenticate_staff)
