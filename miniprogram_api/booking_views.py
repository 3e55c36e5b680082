"""Mini-program booking routes: book (idempotent), list, cancel, the appointment's QR code."""

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
from backend.http import body, idempotency_key
from backend.identity import service as identity
from miniprogram_api.auth import resident_id

bp = Blueprint("mp_booking")


class Book(Input):
    model_config = ConfigDict(extra="forbid")
    slot_id: Id = Field(description="from GET /api/v1/halls/{hall_id}/availability")


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
    answer["qr_url"] = qr.url(ctx.settings.public_base_url,
                              qr.make_token(ctx.settings.secret_key, "appointment", appointment.id))
    return json(answer, status=201 if created else 200, ensure_ascii=False)


@bp.get("/appointments")
@openapi.summary("Own appointments, newest first, and whether booking is barred (with reason and end)")
@openapi.tag("mini program")
@openapi.secured("resident")
async def mine(request: Request) -> HTTPResponse:
    rid = resident_id(request)
    resident = await identity.get_resident(resident_id=rid)
    return json({"appointments": await booking.list_own(resident_id=rid),
                 **await booking.booking_status(person_hash=resident.id_number_hash)}, ensure_ascii=False)


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
    ctx = request.app.ctx
    appointment = await booking.own_appointment(resident_id=resident_id(request), appointment_id=appointment_id)
    content = qr.url(ctx.settings.public_base_url, qr.make_token(ctx.settings.secret_key, "appointment",
                                                                 appointment.id))
    return qr_response(content, fmt)


def qr_response(content: str, fmt: str) -> HTTPResponse:
    buf = io.BytesIO()
    if fmt == "svg":
        qrcode.make(content, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2).save(buf)
        return raw(buf.getvalue(), content_type="image/svg+xml", headers={"Cache-Control": "private, no-store"})
    qrcode.make(content, box_size=10, border=2).save(buf)
    return raw(buf.getvalue(), content_type="image/png", headers={"Cache-Control": "private, no-store"})
