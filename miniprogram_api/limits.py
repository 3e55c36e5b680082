"""Every resident write is rate-limited, per resident, in one place (the surface's authentication).

A resident is counted by account, never by client address: Chinese mobile networks put thousands of residents
behind one address. Per-address limits are for anonymous callers and failed look-ups only (logins, QR look-ups).
Each write route spends from one bucket; routes not named here share the general write bucket, so a new write
route is limited from its first day.
"""

from __future__ import annotations

from sanic import Request

from backend import ratelimit
from backend.settings import Settings

# Route name -> (bucket, the setting holding its COUNT/SECONDS).
WRITE_LIMITS: dict[str, tuple[str, str]] = {
    "mp_booking.book": ("booking", "rate_booking_resident"),
    "mp_booking.cancel": ("booking", "rate_booking_resident"),
    "mp_booking.reschedule": ("booking", "rate_booking_resident"),
    "mp_cases.apply": ("cases", "rate_case_resident"),
    "mp_cases.corrections": ("cases", "rate_case_resident"),
    "mp_cases.withdraw": ("cases", "rate_case_resident"),
    "mp_cases.upload": ("upload", "rate_upload_resident"),
    "mp_cases.evaluate": ("evaluation", "rate_evaluation_resident"),
    "mp_cases.complain": ("complaint", "rate_complaint_resident"),
    "mp_payments.pay": ("payments", "rate_payment_resident"),
    "mp_notify.subscribe": ("subscriptions", "rate_subscription_resident"),
    "mp_notify.put_settings": ("subscriptions", "rate_subscription_resident"),
    "mp_identity.bind_real_name": ("realname", "rate_realname_resident"),
    "mp_identity.confirm_real_name": ("link_confirm", "rate_login_account"),
    "mp_identity.detach_channel": ("realname", "rate_realname_resident"),
    # Shown while the resident stands at a kiosk, refreshed as it expires: its own bucket, the general size,
    # so refreshing never eats the budget of the resident's other writes.
    "mp_kiosk_codes.issue": ("kiosk_code", "rate_resident_write"),
}
DEFAULT = ("write", "rate_resident_write")
READS = frozenset({"GET", "HEAD"})


def bucket_of(route_name: str) -> tuple[str, str]:
    """(bucket, setting) a write route spends from; route names are `app.bp.view`, the table uses `bp.view`."""
    short = route_name.split(".", 1)[1] if route_name.count(".") >= 2 else route_name
    return WRITE_LIMITS.get(short, DEFAULT)


async def spend(request: Request, resident_id: int) -> None:
    """Count this request against its bucket when it writes; 429 `rate_limited` with Retry-After past the limit."""
    if request.method in READS or request.route is None:
        return
    bucket, setting = bucket_of(request.route.name)
    settings: Settings = request.app.ctx.settings
    spec = str(getattr(settings, setting))
    await ratelimit.enforce(request.app.ctx.redis, f"{bucket}:{resident_id}", ratelimit.Limit.parse(spec))
