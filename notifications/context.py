"""Who an event concerns and the values its templates show, asked of the packages that emitted it.

Read-only look-ups by id through those packages' service functions (never their tables). The
emitting packages' payloads carry ids only (never personal data), so the names shown in a message
are read here, once, when the message is planned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backend import clock
from backend.booking import service as booking
from backend.cases import service as cases
from backend.catalog import service as catalog
from backend.identity import service as identity
from backend.jobs.models import OutboxEvent
from notifications import render

LEVEL_TEXT = {"yellow": "黄灯", "red": "红灯"}


@dataclass
class Audience:
    residents: list[int] = field(default_factory=list)
    halls: list[int] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    # Channels the message must not go through: a notice of a login just attached goes to the owner's
    # other channels, never (only) to the one whoever attached it is holding.
    skip_channels: frozenset[str] = frozenset()


CHANNEL_NAMES = {"wechat": "微信", "alipay": "支付宝"}


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
    return await catalog.hall_name(hall_id=None if hall_id is None else int(hall_id))


async def _item_name(*, item_id: Any = None, code: Any = None) -> str:
    return await catalog.item_name(item_id=None if item_id is None else int(item_id),
                                   code=None if code is None else str(code))


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
            appt = await booking.appointment_parties(appointment_id=int(payload["appointment_id"]))
            if appt:
                values["item_name"] = await _item_name(item_id=appt["item_id"])
                out.residents.append(appt["resident_id"])
    elif topic.startswith("resident."):
        values["channel_name"] = CHANNEL_NAMES.get(str(payload.get("channel")), str(payload.get("channel", "")))
        out.residents.append(int(payload["resident_id"]))
        if topic == "resident.channel_attached":
            out.skip_channels = frozenset({str(payload.get("channel"))})
    elif topic.startswith("case."):
        row = await cases.case_parties(case_id=int(payload["case_id"]))
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
    return await identity.reached_as(resident_id=resident_id)


async def channels_of(resident_id: int) -> dict[str, str]:
    """The resident's mini-program channels and their address there (openid, Alipay open_id/user_id)."""
    return await identity.channel_addresses(resident_id=resident_id)


async def phone_enc(resident_id: int) -> str | None:
    return await identity.phone_ciphertext(resident_id=resident_id)
