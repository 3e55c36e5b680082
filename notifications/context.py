"""Who an event concerns and the values its templates show, read from the packages that emitted it.

Read-only look-ups by id. The emitting packages' payloads carry ids only (never personal data),
so the names shown in a message are read here, once, when the message is planned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backend import clock
from backend.booking.models import Appointment
from backend.cases.models import Case
from backend.catalog.models import Hall, ServiceItem
from backend.identity.models import ChannelIdentity, Resident
from backend.jobs.models import OutboxEvent
from notifications import render

LEVEL_TEXT = {"yellow": "黄灯", "red": "红灯"}


@dataclass
class Audience:
    residents: list[int] = field(default_factory=list)
    halls: list[int] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


async def event_time(event_id: Any) -> datetime:
    """When the event was committed (the outbox row's creation), for the message and for lag figures."""
    row = await OutboxEvent.filter(event_id=event_id).first().values("created_at", "available_at")
    if not row:
        return clock.now()
    # available_at is stamped by backend.clock (injected in tests); created_at by the database layer.
    # A delayed event became available after it was committed, so the earlier of the two is the commit.
    available = datetime.fromtimestamp(int(row["available_at"]) / 1000, tz=UTC)
    created = row["created_at"]
    return min(created, available) if isinstance(created, datetime) else available


async def _hall_name(hall_id: Any) -> str:
    if hall_id is None:
        return ""
    name = await Hall.filter(id=int(hall_id)).first().values_list("name", flat=True)
    return str(name or "")


async def _item_name(*, item_id: Any = None, code: Any = None) -> str:
    query = ServiceItem.filter(id=int(item_id)) if item_id is not None else ServiceItem.filter(code=str(code))
    name = await query.first().values_list("name", flat=True)
    return str(name or "")


def _fen(fen: int) -> tuple[str, str]:
    yuan = f"{fen / 100:.2f}"
    return yuan, f"{yuan}元"


async def audience(topic: str, payload: dict[str, Any], *, at: datetime, template: render.Template) -> Audience:
    values: dict[str, Any] = {**payload, "event_time": at.isoformat(), "event_time_text": render.time_text(at)}
    out = Audience(values=values)
    if template.audience == "staff":
        values["level_text"] = LEVEL_TEXT.get(str(payload.get("level")), str(payload.get("level", "")))
        if payload.get("hall_id") is not None:
            out.halls.append(int(payload["hall_id"]))
        return out
    if topic.startswith("appointment."):
        values["item_name"] = await _item_name(code=payload.get("item_code"))
        values["hall_name"] = await _hall_name(payload.get("hall_id"))
        starts = payload.get("starts_at")
        if isinstance(starts, str):
            values["starts_at_text"] = render.time_text(datetime.fromisoformat(starts))
        out.residents.append(int(payload["resident_id"]))
    elif topic == "ticket.called":
        values["ticket_code"] = payload.get("code", "")
        values["hall_name"] = await _hall_name(payload.get("hall_id"))
        if payload.get("appointment_id") is not None:
            row = await Appointment.filter(id=int(payload["appointment_id"])).first().values(
                "resident_id", "item_id")
            if row:
                values["item_name"] = await _item_name(item_id=row["item_id"])
                out.residents.append(int(row["resident_id"]))
    elif topic.startswith("case."):
        row = await Case.filter(id=int(payload["case_id"])).first().values(
            "resident_id", "item_id", "hall_id", "fee_total_fen")
        if row:
            values["item_name"] = await _item_name(item_id=row["item_id"])
            values["hall_name"] = await _hall_name(row["hall_id"])
            values["fee_yuan"], values["fee_text"] = _fen(int(row["fee_total_fen"] or 0))
            values["missing_count"] = len(payload.get("codes") or [])
            if row["resident_id"] is not None:  # a walk-in applicant without the mini program has no inbox
                out.residents.append(int(row["resident_id"]))
    out.residents = [await current_resident(r) for r in out.residents]
    return out


async def current_resident(resident_id: int) -> int:
    """A resident folded into another after binding on a second platform is reached as that one."""
    merged: Any = await Resident.filter(id=resident_id).first().values_list("merged_into_id", flat=True)
    return int(merged) if merged else resident_id


async def channels_of(resident_id: int) -> dict[str, str]:
    """The resident's mini-program channels and their address there (openid, Alipay open_id/user_id)."""
    rows = await ChannelIdentity.filter(resident_id=resident_id).order_by("-last_login_at", "-id").values(
        "channel", "subject", "alipay_open_id", "alipay_user_id")
    out: dict[str, str] = {}
    for r in rows:
        channel = str(r["channel"])
        if channel in out:
            continue
        out[channel] = str(r["alipay_open_id"] or r["alipay_user_id"] or r["subject"]) if channel == "alipay" \
            else str(r["subject"])
    return out


async def phone_enc(resident_id: int) -> str | None:
    value = await Resident.filter(id=resident_id).first().values_list("phone_enc", flat=True)
    return str(value) if value else None
