"""The outside providers each process talks to, built from settings: real clients, or in
development the loopback fakes palmhall serves itself under /_fakes/."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from sanic import Sanic

from backend.identity.alipay import AlipayClient
from backend.identity.linking import CodeSender
from backend.identity.realname import HttpRealNameVerifier, RealNameVerifier
from backend.identity.wechat import WeChatClient
from backend.settings import Settings, SettingsError
from notifications.sms import AliyunSms, SmsProvider

if TYPE_CHECKING:  # the fakes are imported only where they are served or talked to (development)
    from backend.identity import alipay_fake
    from payments import wechatpay_fake

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
    base = f"{settings.local_base_url}{FAKES_PREFIX}"
    return {"wechat_api_base": f"{base}/wechat", "alipay_gateway": f"{base}/alipay/gateway.do",
            "realname_api_base": f"{base}/realname", "hall_api_base": f"{base}/hall"}


# The fakes' keys, generated once into SECRETS_FILE beside the other generated secrets: every process (the server
# that serves the fakes, `palmhall payments reconcile`, a separate `palmhall worker`) and every restart then talks
# to the same platforms, and a signature made in one verifies in another.
FAKE_KEY_NAMES = ("FAKES_ALIPAY_APP_PRIVATE_KEY", "FAKES_ALIPAY_PRIVATE_KEY", "FAKES_WECHATPAY_MERCHANT_PRIVATE_KEY",
                  "FAKES_WECHATPAY_PLATFORM_PRIVATE_KEY", "FAKES_WECHATPAY_APIV3_KEY")


@dataclass(frozen=True)
class FakeKeys:
    alipay_app_private: str  # ours at the fake Alipay (base64 PKCS#8 DER)
    alipay_private: str  # the fake Alipay's, that signs its answers and notifications
    wechatpay_merchant_private: str  # ours at the fake WeChat Pay
    wechatpay_platform_private: str  # the fake WeChat Pay's
    wechatpay_apiv3_key: str


def _new_fake_key(name: str) -> str:
    if name == "FAKES_WECHATPAY_APIV3_KEY":
        return secrets.token_hex(16)  # 32 characters, as WeChat Pay's APIv3 key
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())).decode("ascii")


def fake_keys(settings: Settings) -> FakeKeys:
    """The fakes' keys from SECRETS_FILE, made (once, under a lock: two processes may start together) if missing."""
    path = Path(settings.secrets_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored: dict[str, str] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        missing = [name for name in FAKE_KEY_NAMES if not stored.get(name)]
        if missing:
            stored.update({name: _new_fake_key(name) for name in missing})
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stored, indent=2, sort_keys=True), encoding="utf-8")
            tmp.chmod(0o600)
            tmp.replace(path)
    return FakeKeys(*(stored[name] for name in FAKE_KEY_NAMES))


def _payment_fakes(settings: Settings, keys: FakeKeys, *, state_dir: Path | None = None
                   ) -> tuple[alipay_fake.FakeAlipay, wechatpay_fake.FakeWeChatPay]:
    from backend.identity import alipay_fake
    from payments import wechatpay_fake

    alipay = alipay_fake.FakeAlipay.from_private_keys(app_id=settings.alipay_app_id,
                                                      app_private_key=keys.alipay_app_private,
                                                      alipay_private_key=keys.alipay_private)
    wechatpay = wechatpay_fake.FakeWeChatPay.create(
        appid=settings.wechat_app_id, apiv3_key=keys.wechatpay_apiv3_key,
        keys=wechatpay_fake.Keys.from_private(keys.wechatpay_merchant_private, keys.wechatpay_platform_private),
        state_file=str(state_dir / "wechatpay.json") if state_dir else "")
    return alipay, wechatpay


def _client_overrides(settings: Settings, alipay: alipay_fake.FakeAlipay,
                      wechatpay: wechatpay_fake.FakeWeChatPay) -> dict[str, Any]:
    from payments import alipay_fake as alipay_trades_fake

    base = f"{settings.local_base_url}{FAKES_PREFIX}"
    return {
        **fake_settings(settings),
        **wechatpay.client_settings(f"{base}/wechatpay"),
        "alipay_seller_id": alipay_trades_fake.SELLER_ID,
        "sms_endpoint": f"{base}/sms/",
        "alipay_app_private_key": alipay.app_private_key_b64,
        "alipay_public_key": alipay.alipay_public_key_b64,
    }


def with_fakes(settings: Settings) -> Settings:
    """Settings of a process that talks to the fakes the development server serves (`palmhall payments reconcile`,
    `palmhall worker`): the same addresses and keys as the server's own clients."""
    alipay, wechatpay = _payment_fakes(settings, fake_keys(settings))
    return settings.with_overrides(**_client_overrides(settings, alipay, wechatpay))


def mount_fakes(app: Sanic, settings: Settings) -> Settings:
    """Development only: serve fake platforms on this server and point the clients at them."""
    from backend.hall_sync import fake as hall_fake
    from backend.identity import alipay_fake, realname_fake, wechat_fake
    from payments import alipay_fake as alipay_trades_fake
    from payments import wechatpay_fake

    state_dir = Path(settings.fakes_state_dir)
    wechat = wechat_fake.FakeWeChat(app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret)
    wechat.codes = wechat_fake.AnyCode()  # any wx.login code logs in as "demo-<code>"
    alipay, wechatpay = _payment_fakes(settings, fake_keys(settings), state_dir=state_dir)
    alipay.accept_any_code = True
    realname = realname_fake.FakeRealName(app_id=settings.realname_app_id, secret=settings.realname_secret)
    app.blueprint(wechat_fake.blueprint(wechat, url_prefix=f"{FAKES_PREFIX}/wechat"))
    app.blueprint(alipay_fake.blueprint(alipay, url_prefix=f"{FAKES_PREFIX}/alipay"))
    app.blueprint(realname_fake.blueprint(realname, url_prefix=f"{FAKES_PREFIX}/realname"))
    # The main hall calls back into this same server, so the demo shows sync both ways; it keeps its cases in a
    # file, so a restart does not make it forget them (and refuse every next step as out of order).
    hall = hall_fake.FakeHall(app_id=settings.hall_app_id, secret=settings.hall_app_secret,
                              callback_url=f"{settings.local_base_url}/api/v1/hall/callbacks",
                              state_file=str(state_dir / "hall.json"))
    app.blueprint(hall_fake.blueprint(hall, url_prefix=f"{FAKES_PREFIX}/hall"))
    app.ctx.fakes = {"wechat": wechat, "alipay": alipay, "realname": realname, "hall": hall}
    # Notifications: text messages to a fake Aliyun SMS, template messages on the fake Alipay gateway.
    from notifications import alipay_fake as notify_alipay_fake
    from notifications import sms_fake

    sms = sms_fake.FakeSms(access_key_id=settings.sms_access_key_id, access_key_secret=settings.sms_access_key_secret)
    # Like Aliyun with HTTP batch push on: each text is reported delivered to our status-report URL.
    sms.report_url = (f"{settings.local_base_url}/api/v1/notifications/callbacks/sms"
                      f"?token={settings.sms_report_token}")
    sms.auto_report = bool(settings.sms_report_token)
    app.blueprint(sms_fake.blueprint(sms, url_prefix=f"{FAKES_PREFIX}/sms"))
    app.ctx.fakes.update(sms=sms, alipay_messages=notify_alipay_fake.install(alipay))
    # Payments: a fake WeChat Pay v3; Alipay's trade methods on the same fake gateway. A refund waits at either
    # until a developer says how it ends (POST /_fakes/{wechatpay,alipay}/simulate/refund/{no}?outcome=...).
    base = f"{settings.local_base_url}{FAKES_PREFIX}"
    wechatpay.base_url = f"{base}/wechatpay"
    alipay_trades = alipay_trades_fake.AlipayTrades(alipay, base_url=f"{base}/alipay", refunds_wait=True,
                                                    state_file=str(state_dir / "alipay.json"))
    app.blueprint(wechatpay_fake.blueprint(wechatpay, url_prefix=f"{FAKES_PREFIX}/wechatpay"))
    app.blueprint(alipay_trades_fake.blueprint(alipay_trades, url_prefix=f"{FAKES_PREFIX}/alipay"))
    app.ctx.fakes.update(wechatpay=wechatpay, alipay_trades=alipay_trades)
    return settings.with_overrides(**_client_overrides(settings, alipay, wechatpay))


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
