"""Codes a resident shows a kiosk so that it may act for them once: one purpose, minutes long, spent on use.

The kiosk never sees the resident's access token (which it could replay for anything the resident may do):
the mini program asks for a code and shows it as a QR; the kiosk sends it with the one request it serves.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from backend import clock, db
from backend.audit import service as audit
from backend.catalog import service as catalog
from backend.errors import DomainError, register_codes
from backend.identity import service as identity
from backend.identity.models import KioskCode, Resident

register_codes({
    "kiosk_code.missing": (401, "请在小程序中打开“自助终端办事码”，出示给终端扫描"),
    "kiosk_code.invalid": (401, "办事码无效，请在小程序中重新出示"),
    "kiosk_code.expired": (401, "办事码已过期，请在小程序中刷新后重新出示"),
    "kiosk_code.used": (401, "办事码已使用过，请在小程序中刷新后重新出示"),
})

TTL = timedelta(minutes=2)
PREFIX = "kc_"
SHAPE = re.compile(r"^kc_[A-Za-z0-9_-]{32}$")


class Purpose(StrEnum):
    """What a kiosk may do with a code: one thing each."""

    KIOSK_APPLICATION = "kiosk_application"  # apply for a case at a kiosk, in the resident's name


@dataclass(frozen=True)
class Issued:
    code: str
    purpose: Purpose
    hall_id: int | None
    expires_at: datetime


def _digest(code: str) -> str:
    # 192 random bits: a plain hash finds the row and is useless to whoever reads the table.
    return hashlib.sha256(code.encode()).hexdigest()


async def issue(*, resident_id: int, purpose: Purpose, hall_id: int | None, family: str | None) -> Issued:
    """A fresh code for this resident and purpose (and hall, when named). Only a verified resident gets one:
    nothing a kiosk does for someone works without their real name."""
    resident = await identity.get_resident(resident_id=resident_id)
    if resident.id_number_hash is None:
        raise DomainError("identity.not_verified")
    if hall_id is not None:
        await catalog.get_hall(hall_id=hall_id)
    code = PREFIX + secrets.token_urlsafe(24)
    expires = clock.now() + TTL
    await KioskCode.create(code_hash=_digest(code), resident_id=resident.id, purpose=purpose.value, hall_id=hall_id,
                           family=family, expires_at=expires)
    return Issued(code=code, purpose=purpose, hall_id=hall_id, expires_at=expires)


async def redeem(*, code: str, purpose: Purpose, hall_id: int, device_id: str, redis: Redis) -> int:
    """Spend a code shown at a kiosk of `hall_id`: the resident it was issued to. The first request that presents
    it spends it, whatever that request's outcome; the resident shows a fresh one to try again."""
    code = code.strip()
    if not code:
        raise DomainError("kiosk_code.missing")
    row = await KioskCode.get_or_none(code_hash=_digest(code)) if SHAPE.match(code) else None
    if row is None or row.purpose != purpose.value or row.hall_id not in (None, hall_id):  # type: ignore[attr-defined]
        raise DomainError("kiosk_code.invalid")
    now = clock.now()
    if row.used_at is not None:
        raise DomainError("kiosk_code.used")
    if row.expires_at <= now:
        raise DomainError("kiosk_code.expired")
    if await identity.family_revoked(redis=redis, family=row.family):
        raise DomainError("kiosk_code.invalid")  # the resident ended the session that made it
    async with db.transaction() as tx:
        # One conditional update: of two kiosks racing with one code, one spends it.
        spent = await KioskCode.filter(id=row.id, used_at=None, expires_at__gt=now).using_db(tx).update(
            used_at=now, used_by=device_id)
        if not spent:
            raise DomainError("kiosk_code.used")
        resident: Any = await Resident.filter(id=row.resident_id).using_db(tx).first()  # type: ignore[attr-defined]
        if resident is None or resident.merged_into_id is not None:
            raise DomainError("kiosk_code.invalid")
        await audit.record(using_db=tx, actor_kind="kiosk", actor_id=device_id, action="kiosk_code.used",
                           target_kind="resident", target_id=resident.id,
                           details={"purpose": purpose.value, "hall_id": hall_id})
    return int(resident.id)
