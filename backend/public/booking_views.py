"""Anonymous booking routes: a hall's bookable slots, its queue and the queue's live stream (SSE)."""

from __future__ import annotations

import json

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from sanic_ext import openapi

from backend.booking import queue
from backend.booking import service as booking
from backend.bounds import Day, Input
from backend.http import parse

bp = Blueprint("public_booking")

KEEPALIVE_SECONDS = 15


class AvailabilityQuery(Input):
    model_config = ConfigDict(extra="ignore")
    item: str = Field(min_length=1, max_length=40)
    date: Day


@bp.get("/halls/<hall_id:int32>/availability")
@openapi.summary("Bookable slots of an item in a hall on a date, with seats left")
@openapi.tag("public")
@openapi.parameter("item", str, "query", required=True)
@openapi.parameter("date", str, "query", required=True, description="YYYY-MM-DD")
async def availability(request: Request, hall_id: int) -> HTTPResponse:
    q = parse(AvailabilityQuery, {k: request.args.get(k) for k in request.args})
    return json_response(await booking.availability(hall_id=hall_id, item_code=q.item, day=q.date),
                         ensure_ascii=False)


@bp.get("/halls/<hall_id:int32>/queue")
@openapi.summary("The hall's queue now: calling, recently called, waiting per group")
@openapi.tag("public")
async def queue_now(request: Request, hall_id: int) -> HTTPResponse:
    return json_response(await queue.snapshot(hall_id=hall_id), ensure_ascii=False)


@bp.get("/halls/<hall_id:int32>/queue/stream")
@openapi.summary("Server-sent events of the hall's queue for display boards")
@openapi.tag("public")
async def queue_stream(request: Request, hall_id: int) -> None:
    first = await queue.snapshot(hall_id=hall_id)  # 404 for an unknown hall before the stream opens
    pubsub = request.app.ctx.redis.pubsub()
    await pubsub.subscribe(f"{queue.CHANNEL}{hall_id}")
    response = await request.respond(content_type="text/event-stream",
                                      headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        await response.send(f"retry: 3000\nevent: queue\ndata: {json.dumps(first, ensure_ascii=False)}\n\n")
        quiet = 0.0
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                quiet += 1.0
                if quiet >= KEEPALIVE_SECONDS:
                    # Proxies drop idle streams; a comment line keeps this one open.
                    await response.send(": keep-alive\n\n")
                    quiet = 0.0
                continue
            quiet = 0.0
            data = message["data"].decode() if isinstance(message["data"], bytes) else str(message["data"])
            await response.send(f"event: queue\ndata: {data}\n\n")
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()
