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
from backend.cases import evaluation
from backend.cases import service as cases
from backend.catalog import service as catalog
from backend.identity import service as identity
from backend.jobs.models import OutboxEvent
from notifications import render
from payments import service as payments

LEVEL_TEXT = {"yellow": "黄灯", "red": "红灯"}
COMPLAINT_KIND_TEXT = {"complaint": "投诉", "question": "咨询"}
PAY_CHANNEL_NAMES = {"wechat": "微信支付", "alipay": "支付宝"}
# When a closure's event carries no reason of its own.
HALL_REASON = "大厅工作安排调整"


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


def _day_text(moment: datetime) -> str:
    return moment.astimezone(clock.SHANGHAI).strftime("%Y年%m月%d日")


async def _case_values(values: dict[str, Any], case_id: Any) -> int | None:
    """The case's item, hall and fee into `values`; its resident (None for a walk-in without the mini program)."""
    row = await cases.case_parties(case_id=int(case_id))
    if not row:
        return None
    values["item_name"] = await _item_name(item_id=row["item_id"])
    values["hall_name"] = await _hall_name(row["hall_id"])
    values["fee_yuan"], values["fee_text"] = _fen(int(row["fee_total_fen"] or 0))
    return None if row["resident_id"] is None else int(row["resident_id"])


async def _appointment_values(values: dict[str, Any], payload: dict[str, Any]) -> None:
    values["item_name"] = await _item_name(code=payload.get("item_code"))
    values["hall_name"] = await _hall_name(payload.get("hall_id"))
    starts = payload.get("starts_at")
    if isinstance(starts, str):
        values["starts_at_text"] = render.time_text(datetime.fromisoformat(starts))
    if payload.get("by") == "hall":
        values["reason"] = str(payload.get("reason") or "").strip() or HALL_REASON
    if payload.get("bar_id") is not None:
        bar = await booking.bar_summary(bar_id=int(payload["bar_id"]))
        if bar:
            values["bar_until"] = bar["ends_at"].isoformat()
            values["bar_until_text"] = render.time_text(bar["ends_at"])
            values["bar_reason"] = bar["reason"]


async def _complaint_values(values: dict[str, Any], payload: dict[str, Any]) -> int | None:
    row = await evaluation.complaint_reply(complaint_id=int(payload["complaint_id"]))
    if not row:
        return None
    values["kind_text"] = COMPLAINT_KIND_TEXT.get(row["kind"], "投诉或咨询")
    values["hall_name"] = await _hall_name(row["hall_id"])
    values["asked_at"] = row["created_at"].isoformat()
    values["asked_on_text"] = _day_text(row["created_at"])
    values["answer"] = row["answer"]
    return int(row["resident_id"])


async def _rectification_values(values: dict[str, Any], payload: dict[str, Any]) -> int | None:
    row = await evaluation.rectification_reply(rectification_id=int(payload["rectification_id"]))
    if not row:
        return None
    await _case_values(values, row["case_id"])
    values["response"] = row["response"]
    return int(row["resident_id"])


async def _refund_values(values: dict[str, Any], payload: dict[str, Any]) -> int | None:
    """The payer hears of it; paid at a kiosk (no payer on record), the case's own resident does."""
    row = await payments.refund_parties(refund_id=int(payload["refund_id"]))
    if not row:
        return None
    values["case_no"] = row["case_no"]
    values["amount_yuan"], values["amount_text"] = _fen(int(row["amount_fen"]))
    values["reason"] = row["reason"]
    values["pay_channel_name"] = PAY_CHANNEL_NAMES.get(row["channel"], row["channel"])
    case_id = await cases.case_id_of(case_no=row["case_no"])
    owner = None
    if case_id is not None:
        values["case_id"] = case_id
        owner = await _case_values(values, case_id)
    else:
        values["hall_name"] = await _hall_name(row["hall_id"])
    return int(row["resident_id"]) if row["resident_id"] is not None else owner


async def audience(topic: str, payload: dict[str, Any], *, at: datetime, template: render.Template) -> Audience:
    values: dict[str, Any] = {**payload, "event_time": at.isoformat(), "event_time_text": render.time_text(at)}
    out = Audience(values=values)
    if template.audience == "staff":
        values["level_text"] = LEVEL_TEXT.get(str(payload.get("level")), str(payload.get("level", "")))
        if payload.get("hall_id") is not None:
            out.halls.append(int(payload["hall_id"]))
        return out
    if topic.startswith("appointment."):
        await _appointment_values(values, payload)
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
        owner = await _case_values(values, payload["case_id"])
        values["missing_count"] = len(payload.get("codes") or [])
        if topic == "case.delivered":
            delivery = await cases.delivery_of(case_id=int(payload["case_id"]))
            values["tracking_no"] = (delivery or {}).get("tracking_no") or "-"
        if owner is not None:  # a walk-in applicant without the mini program has no inbox
            out.residents.append(owner)
    else:
        # The answers a resident is owed, and money given back: each read from the package that owns it.
        readers = {"complaint.answered": _complaint_values, "rectification.closed": _rectification_values,
                   "payment.refunded": _refund_values}
        reader = readers.get(topic)
        whom = await reader(values, payload) if reader else None
        if whom is not None:
            out.residents.append(whom)
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
