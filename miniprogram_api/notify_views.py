"""Mini-program notification routes: the inbox, subscribe-message consent, notification settings."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.bounds import Id, Input
from backend.http import body, parse
from miniprogram_api.auth import resident_id
from notifications import handlers, service
from notifications.models import NotifyChannel

bp = Blueprint("mp_notify")


class InboxQuery(Input):
    model_config = ConfigDict(extra="forbid")
    unread: bool = False
    limit: int = Field(50, ge=1, le=100)
    before_id: Id | None = None


class SubscriptionsIn(Input):
    """What wx.requestSubscribeMessage (or Alipay's my.requestSubscribeMessage) returned, template id -> answer."""

    model_config = ConfigDict(extra="forbid")
    channel: Literal["wechat", "alipay"] = "wechat"
    results: dict[str, Literal["accept", "reject", "ban", "filter"]] = Field(min_length=1, max_length=20)


class SettingsIn(Input):
    model_config = ConfigDict(extra="forbid")
    categories: dict[str, bool] = Field(min_length=1, max_length=20)


def _policy() -> service.Policy:
    return handlers.current()[0]


@bp.get("/inbox")
@openapi.summary("Own messages, newest first, with the unread count: one page (`limit` from `before_id`) with the "
                 "`total` and `next_before_id`")
@openapi.tag("mini program")
@openapi.secured("resident")
@openapi.parameter("unread", bool, "query")
@openapi.parameter("limit", int, "query")
@openapi.parameter("before_id", int, "query")
async def inbox(request: Request) -> HTTPResponse:
    q = parse(InboxQuery, {k: request.args.get(k) for k in request.args})
    return json(await service.inbox(resident_id=resident_id(request), unread_only=q.unread, limit=q.limit,
                                    before_id=q.before_id), ensure_ascii=False)


@bp.post("/inbox/<notification_id:int>/read")
@openapi.summary("Mark one message read")
@openapi.tag("mini program")
@openapi.secured("resident")
async def read_one(request: Request, notification_id: int) -> HTTPResponse:
    await service.mark_read(resident_id=resident_id(request), notification_id=notification_id)
    return json({"read": True})


@bp.post("/inbox/read-all")
@openapi.summary("Mark every message read")
@openapi.tag("mini program")
@openapi.secured("resident")
async def read_all(request: Request) -> HTTPResponse:
    n = await service.mark_read(resident_id=resident_id(request), notification_id=None)
    return json({"marked": n})


@bp.post("/subscriptions")
@openapi.summary("Record what wx.requestSubscribeMessage returned: each accepted one-time template allows one message")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(SubscriptionsIn)
async def subscribe(request: Request, payload: SubscriptionsIn) -> HTTPResponse:
    answer = await service.record_subscriptions(resident_id=resident_id(request),
                                                channel=NotifyChannel(payload.channel),
                                                results=dict(payload.results), policy=_policy())
    return json(answer, ensure_ascii=False)


@bp.get("/subscriptions")
@openapi.summary("Own subscriptions and how many one-time messages each still allows")
@openapi.tag("mini program")
@openapi.secured("resident")
async def subscriptions(request: Request) -> HTTPResponse:
    return json({"subscriptions": await service.subscriptions(resident_id=resident_id(request))})


@bp.get("/notification-settings")
@openapi.summary("Message categories and whether each is on; required ones cannot be switched off")
@openapi.tag("mini program")
@openapi.secured("resident")
async def get_settings(request: Request) -> HTTPResponse:
    cats = await service.preferences(resident_id=resident_id(request), policy=_policy())
    return json({"categories": cats}, ensure_ascii=False)


@bp.put("/notification-settings")
@openapi.summary("Switch categories on or off")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(SettingsIn)
async def put_settings(request: Request, payload: SettingsIn) -> HTTPResponse:
    cats = await service.set_preferences(resident_id=resident_id(request), changes=dict(payload.categories),
                                         policy=_policy())
    return json({"categories": cats}, ensure_ascii=False)
