"""The outside providers each process talks to, built from settings: real clients, or in
development the loopback fakes palmhall serves itself under /_fakes/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sanic import Sanic

from backend.identity.alipay import AlipayClient
from backend.identity.linking import CodeSender
from backend.identity.realname import HttpRealNameVerifier, RealNameVerifier
from backend.identity.wechat import WeChatClient
from backend.settings import Settings, SettingsError
from notifications.sms import AliyunSms, SmsProvider

FAKES_PREFIX = "/_fakes"


@dataclass
class Providers:
    wechat: WeChatClient
    alipay: AlipayClient
    realname: RealNameVerifier
    # Texts sent while a person waits (one-time codes); notices go through the outbox instead.
    sms: SmsProvider
    link_codes: CodeSender

    async def aclose(self) -> None:
        await self.wechat.aclose()
        await self.alipay.aclose()
        await self.realname.aclose()
        await self.sms.aclose()


def fake_settings(settings: Settings) -> dict[str, Any]:
    """Where the clients find the fakes when this process serves them."""
    base = f"http://127.0.0.1:{settings.port}{FAKES_PREFIX}"
    return {"wechat_api_base": f"{base}/wechat", "alipay_gateway": f"{base}/alipay/gateway.do",
            "realname_api_base": f"{base}/realname", "hall_api_base": f"{base}/hall"}


def mount_fakes(app: Sanic, settings: Settings) -> Settings:
    """Development only: serve fake platforms on this server and point the clients at them."""
    from backend.hall_sync import fake as hall_fake
    from backend.identity import alipay_fake, realname_fake, wechat_fake

    wechat = wechat_fake.FakeWeChat(app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret)
    wechat.codes = wechat_fake.AnyCode()  # any wx.login code logs in as "demo-<code>"
    alipay = alipay_fake.FakeAlipay.generate(app_id=settings.alipay_app_id)
    alipay.accept_any_code = True
    realname = realname_fake.FakeRealName(app_id=settings.realname_app_id, secret=settings.realname_secret)
    app.blueprint(wechat_fake.blueprint(wechat, url_prefix=f"{FAKES_PREFIX}/wechat"))
    app.blueprint(alipay_fake.blueprint(alipay, url_prefix=f"{FAKES_PREFIX}/alipay"))
    app.blueprint(realname_fake.blueprint(realname, url_prefix=f"{FAKES_PREFIX}/realname"))
    # The main hall calls back into this same server, so the demo shows sync both ways.
    hall = hall_fake.FakeHall(app_id=settings.hall_app_id, secret=settings.hall_app_secret,
                              callback_url=f"http://127.0.0.1:{settings.port}/api/v1/hall/callbacks")
    app.blueprint(hall_fake.blueprint(hall, url_prefix=f"{FAKES_PREFIX}/hall"))
    app.ctx.fakes = {"wechat": wechat, "alipay": alipay, "realname": realname, "hall": hall}
    # Notifications: text messages to a fake Aliyun SMS, template messages on the fake Alipay gateway.
    from notifications import alipay_fake as notify_alipay_fake
    from notifications import sms_fake

    sms = sms_fake.FakeSms(access_key_id=settings.sms_access_key_id, access_key_secret=settings.sms_access_key_secret)
    # Like Aliyun with HTTP batch push on: each text is reported delivered to our status-report URL.
    sms.report_url = (f"http://127.0.0.1:{settings.port}/api/v1/notifications/callbacks/sms"
                      f"?token={settings.sms_report_token}")
    sms.auto_report = bool(settings.sms_report_token)
    app.blueprint(sms_fake.blueprint(sms, url_prefix=f"{FAKES_PREFIX}/sms"))
    app.ctx.fakes.update(sms=sms, alipay_messages=notify_alipay_fake.install(alipay))
    # Payments: a fake WeChat Pay v3 with its own key pairs; Alipay's trade methods on the same fake gateway.
    from payments import alipay_fake as alipay_trades_fake
    from payments import wechatpay_fake

    wechatpay_base = f"http://127.0.0.1:{settings.port}{FAKES_PREFIX}/wechatpay"
    wechatpay = wechatpay_fake.FakeWeChatPay.create(appid=settings.wechat_app_id)
    wechatpay.base_url = wechatpay_base
    alipay_trades = alipay_trades_fake.AlipayTrades(
        alipay, base_url=f"http://127.0.0.1:{settings.port}{FAKES_PREFIX}/alipay")
    app.blueprint(wechatpay_fake.blueprint(wechatpay, url_prefix=f"{FAKES_PREFIX}/wechatpay"))
    app.blueprint(alipay_trades_fake.blueprint(alipay_trades, url_prefix=f"{FAKES_PREFIX}/alipay"))
    app.ctx.fakes.update(wechatpay=wechatpay, alipay_trades=alipay_trades)
    return settings.with_overrides(
        **fake_settings(settings),
        **wechatpay.client_settings(wechatpay_base),
        alipay_seller_id=alipay_trades.seller_id,
        sms_endpoint=f"http://127.0.0.1:{settings.port}{FAKES_PREFIX}/sms/",
        alipay_app_private_key=alipay.app_private_key_b64,
        alipay_public_key=alipay.alipay_public_key_b64,
    )


def build(settings: Settings, redis: Redis) -> Providers:
    try:
        return _build(settings, redis)
    except ValueError as exc:
        # A key that does not load: name the setting, never the key.
        raise SettingsError(f"ALIPAY_APP_PRIVATE_KEY / ALIPAY_PUBLIC_KEY: {exc}") from None


def _build(settings: Settings, redis: Redis) -> Providers:
    sms = AliyunSms(endpoint=settings.sms_endpoint, access_key_id=settings.sms_access_key_id,
                    access_key_secret=settings.sms_access_key_secret, sign_name=settings.sms_sign_name)
    return Providers(
        wechat=WeChatClient(base_url=settings.wechat_api_base, app_id=settings.wechat_app_id,
                            app_secret=settings.wechat_app_secret, redis=redis),
        alipay=AlipayClient(gateway=settings.alipay_gateway, app_id=settings.alipay_app_id,
                            app_private_key=settings.alipay_app_private_key,
                            alipay_public_key=settings.alipay_public_key),
        realname=HttpRealNameVerifier(settings.realname_api_base, settings.realname_app_id,
                                      settings.realname_secret),
        sms=sms,
        link_codes=CodeSender(sms, settings.sms_template_link_code),
    )
