"""The platform clients payments talks to, built from settings once per event loop (web and worker alike)."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

from backend.identity.alipay import AlipayClient
from backend.settings import Settings
from payments.wechatpay import WeChatPayClient, WeChatPayConfig


def notify_url(settings: Settings, channel: str) -> str:
    base = settings.payment_notify_base_url.rstrip("/")  # follows PUBLIC_BASE_URL when not set
    return f"{base}/api/v1/payments/callbacks/{channel}"


@dataclass
class Channels:
    settings: Settings
    wechatpay: WeChatPayClient
    alipay: AlipayClient

    async def aclose(self) -> None:
        await self.wechatpay.aclose()
        await self.alipay.aclose()


def build(settings: Settings) -> Channels:
    return Channels(
        settings=settings,
        wechatpay=WeChatPayClient(WeChatPayConfig(
            api_base=settings.wechatpay_api_base, mchid=settings.wechatpay_mchid, appid=settings.wechat_app_id,
            merchant_private_key=settings.wechatpay_merchant_private_key,
            merchant_serial_no=settings.wechatpay_merchant_serial_no, apiv3_key=settings.wechatpay_apiv3_key,
            platform_public_key=settings.wechatpay_public_key,
            platform_public_key_id=settings.wechatpay_public_key_id,
            notify_url=notify_url(settings, "wechat"),
        )),
        alipay=AlipayClient(gateway=settings.alipay_gateway, app_id=settings.alipay_app_id,
                            app_private_key=settings.alipay_app_private_key,
                            alipay_public_key=settings.alipay_public_key),
    )


# HTTP clients belong to the loop that made them: one set per loop and settings object.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Channels]] = weakref.WeakKeyDictionary()


def for_settings(settings: Settings) -> Channels:
    cache = _by_loop.setdefault(asyncio.get_running_loop(), {})
    found = cache.get(id(settings))
    if found is None or found.settings is not settings:
        found = cache[id(settings)] = build(settings)
    return found
