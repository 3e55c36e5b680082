"""Mini-program booking routes: book and reschedule (idempotent), list and read, cancel, the appointment's QR code."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json, raw
from sanic_ext import openapi

from backend import qr
from backend.booking import service as booking
from backend.bounds import Id, Input
from backend.http import body, idempotency_key, parse
from backend.identity import service as identity
from miniprogram_api.auth import resident_id
from miniprogram_api.schemas import Page

bp = Blueprint("mp_booking")


class Book(Input):
    model_config = ConfigDict(extra="forbid")
    slot_id: Id = Field(description="from GET /api/v1/halls/{hall_id}/availability")


def _qr_url(request: Request, appointment_id: int) -> str:
    s = request.app.ctx.settings
    return qr.url(s.public_base_url, qr.make_token(s.secret_key, "appointment", appointment_id))


@bp.post("/appointments")
@openapi.summary("Book a slot; send an Idempotency-Key so a retry returns the same appointment")
@openapi.tag("mini program")
@openapi.secured("resident")
@openapi.parameter("Idempotency-Key", str, "header", required=True)
@body(Book)
async def book(request: Request, payload: Book) -> HTTPResponse:
    ctx = request.app.ctx
    rid = resident_id(request)
    key = idempotency_key(request, missing="booking.idempotency_key_missing")
    person = await identity.verified_identity(resident_id=rid, hash_key=ctx.settings.hash_key, redis=ctx.redis)
    appointment, created = await booking.book(
        resident_id=rid, person_hash=person, slot_id=payload.slot_id, idempotency_key=key,
        fingerprint=booking.request_fingerprint(payload.model_dump()), redis=ctx.redis,
    )
    answer = await booking.describe(appointment)
    answer["qr_url"] = _qr_url(request, appointment.id)
    return json(answer, status=201 if created else 200, ensure_ascii=False)


@bp.get("/appointments")
@openapi.summary("Own appointments, newest first, one page (`limit`, `offset`) with the `total`, and whether "
                 "booking is barred (with reason and end)")
@openapi.tag("mini program")
@openapi.secured("resident")
@openapi.parameter("limit", int, "query")
@openapi.parameter("offset", int, "query")
async def mine(request: Request) -> HTTPResponse:
    page = parse(Page, {k: request.args.get(k) for k in request.args})
    rid = resident_id(request)
    resident = await identity.get_resident(resident_id=rid)
    return json({**await booking.list_own(resident_id=rid, limit=page.limit, offset=page.offset),
                 **await booking.booking_status(person_hash=resident.id_number_hash)}, ensure_ascii=False)


@bp.get("/appointments/<appointment_id:int>")
@openapi.summary("One own appointment: what the list shows, plus its QR link, the check-in window, the hall's "
                 "address, what to bring (the item's materials) and until when it may be changed")
@openapi.tag("mini program")
@openapi.secured("resident")
async def detail(request: Request, appointment_id: int) -> HTTPResponse:
    answer = await booking.own_detail(resident_id=resident_id(request), appointment_id=appointment_id)
    answer["qr_url"] = _qr_url(request, appointment_id)
    return json(answer, ensure_ascii=False)


@bp.post("/appointments/<appointment_id:int>/reschedule")
@openapi.summary("Move an appointment to another slot of the same item in one step (Idempotency-Key): the new "
                 "appointment, linked to the old one (`rescheduled_from`), which ends cancelled")
@openapi.description("Every booking limit holds for the new slot, and the old one's cut-off for changes "
                     "(booking.change_too_late). When the new slot is refused, the old appointment stands. "
                     "The old seat is offered to others after the cool-down, as a cancelled one is.")
@openapi.tag("mini program")
@openapi.secured("resident")
@openapi.parameter("Idempotency-Key", str, "header", required=True)
@body(Book)
async def reschedule(request: Request, appointment_id: int, payload: Book) -> HTTPResponse:
    ctx = request.app.ctx
    rid = resident_id(request)
    key = idempotency_key(request, missing="booking.idempotency_key_missing")
    person = await identity.verified_identity(resident_id=rid, hash_key=ctx.settings.hash_key, redis=ctx.redis)
    appointment, created = await booking.reschedule(
        resident_id=rid, person_hash=person, appointment_id=appointment_id, slot_id=payload.slot_id,
        idempotency_key=key, redis=ctx.redis,
        fingerprint=booking.request_fingerprint({"reschedule": appointment_id, **payload.model_dump()}),
    )
    answer = await booking.describe(appointment)
    answer["qr_url"] = _qr_url(request, appointment.id)
    return json(answer, status=201 if created else 200, ensure_ascii=False)


@bp.delete("/appointments/<appointment_id:int>")
@openapi.summary("Cancel before the cut-off")
@openapi.tag("mini program")
@openapi.secured("resident")
async def cancel(request: Request, appointment_id: int) -> HTTPResponse:
    await booking.cancel(resident_id=resident_id(request), appointment_id=appointment_id)
    return empty()


@bp.get("/appointments/<appointment_id:int>/qr.png", name="qr_png", ctx_format="png")
@bp.get("/appointments/<appointment_id:int>/qr.svg", name="qr_svg", ctx_format="svg")
@openapi.summary("The appointment's QR code (PNG or SVG): a URL ending in a signed token")
@openapi.tag("mini program")
@openapi.secured("resident")
async def qr_code(request: Request, appointment_id: int) -> HTTPResponse:
    fmt = request.route.ctx.format if request.route else "png"
    appointment = await booking.own_appointment(resident_id=resident_id(request), appointment_id=appointment_id)
    return qr_response(_qr_url(request, appointment.id), fmt)


def qr_response(content: str, fmt: str) -> HTTPResponse:
    buf = io.BytesIO()
    if fmt == "svg":
        qrcode.make(content, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2).save(buf)
        return raw(buf.getvalue(), content_type="image/svg+xml", headers={"Cache-Control": "private, no-store"})
    qrcode.make(content, box_size=10, border=2).save(buf)
    return raw(buf.getvalue(), content_type="image/png", headers={"Cache-Control": "private, no-store"})
