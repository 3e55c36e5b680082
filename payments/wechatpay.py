"""WeChat Pay API v3 client (wechatpayv3's AsyncWeChatPay in platform public-key mode) and notification checks."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wechatpayv3 import utils as wxutils
from wechatpayv3.async_ import AsyncWeChatPay
from wechatpayv3.async_.type import SignType, WeChatPayType

import payments.errors  # noqa: F401  (registers the error codes)
from backend import clock
from backend.errors import DomainError
from backend.signatures import timestamp_of

log = logging.getLogger("palmhall.payments.wechatpay")

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
MAX_SKEW_SECONDS = 300
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class NotificationRefused(Exception):
    """A callback that must not be trusted; `reason` is logged and answered, never its content."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class WeChatPayConfig:
    api_base: str
    mchid: str
    appid: str
    merchant_private_key: str
    merchant_serial_no: str
    apiv3_key: str
    platform_public_key: str
    platform_public_key_id: str
    notify_url: str
    timeout: float = 5.0


def _pem_body(text: str, kind: str) -> str:
    """wechatpayv3 wants the PEM body or a PKCS#8 PEM: accept both, and a `dev-` marked value."""
    text = text.strip()
    if text.startswith("dev-"):
        text = text[4:].strip()
    head = f"-----BEGIN {kind}-----"
    if text.startswith(head):
        return text
    return f"{head}\n{text}\n-----END {kind}-----"


class WeChatPayClient:
    """One merchant's WeChat Pay v3 calls. The SDK is built lazily: a missing key stops the first payment,
    not the server start (the fakes provide keys in development)."""

    def __init__(self, config: WeChatPayConfig) -> None:
        self.config = config
        self._sdk: AsyncWeChatPay | None = None
        self._lock = asyncio.Lock()
        self._public_key: Any = None

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.__aexit__(None, None, None)
            self._sdk = None

    async def sdk(self) -> AsyncWeChatPay:
        async with self._lock:
            if self._sdk is None:
                c = self.config
                try:
                    sdk = AsyncWeChatPay(
                        wechatpay_type=WeChatPayType.MINIPROG, mchid=c.mchid,
                        private_key=_pem_body(c.merchant_private_key, "PRIVATE KEY"),
                        cert_serial_no=c.merchant_serial_no, appid=c.appid, apiv3_key=c.apiv3_key,
                        notify_url=c.notify_url, timeout=(c.timeout, c.timeout),
                        public_key=_pem_body(c.platform_public_key, "PUBLIC KEY"),
                        public_key_id=c.platform_public_key_id,
                    )
                except Exception:
                    log.error("wechat pay keys do not load (WECHATPAY_* settings)")
                    raise DomainError("payment.channel_unavailable") from None
                # The SDK has its gateway fixed; point it at the configured base (a loopback fake in tests).
                sdk._core._gate_way = c.api_base.rstrip("/")
                await sdk.__aenter__()
                self._sdk = sdk
            return self._sdk

    def public_key(self) -> Any:
        if self._public_key is None:
            self._public_key = wxutils.load_public_key(_pem_body(self.config.platform_public_key, "PUBLIC KEY"))
        return self._public_key

    async def _call(self, what: str, coro_fn: Any, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        sdk = await self.sdk()
        try:
            code, message = await coro_fn(sdk, *args, **kwargs)
        except DomainError:
            raise
        except Exception as exc:
            # Network errors and answers that fail the SDK's signature check alike: nothing is trusted.
            log.warning("wechat pay call failed", extra={"call": what, "error": type(exc).__name__})
            raise DomainError("payment.channel_unavailable", headers={"Retry-After": "2"}) from None
        if code >= 500:
            raise DomainError("payment.channel_unavailable", headers={"Retry-After": "2"})
        return code, message

    @staticmethod
    def _json(message: Any) -> dict[str, Any]:
        if isinstance(message, bytes):
            message = message.decode("utf-8")
        try:
            data = json.loads(message) if message else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}

    async def prepay(self, *, out_trade_no: str, description: str, amount_fen: int, time_expire: datetime,
                     openid: str | None) -> dict[str, Any]:
        """JSAPI (with the payer's openid) or Native (without): {'prepay_id'} or {'code_url'}."""
        kwargs: dict[str, Any] = {
            "description": description, "out_trade_no": out_trade_no,
            "amount": {"total": amount_fen, "currency": "CNY"},
            "time_expire": time_expire.astimezone(clock.SHANGHAI).isoformat(timespec="seconds"),
        }
        if openid:
            kwargs.update(payer={"openid": openid}, pay_type=WeChatPayType.JSAPI)
        else:
            kwargs.update(pay_type=WeChatPayType.NATIVE)
        code, message = await self._call("pay", AsyncWeChatPay.pay, **kwargs)
        data = self._json(message)
        if code != 200 or not (data.get("prepay_id") or data.get("code_url")):
            log.warning("wechat pay refused the order", extra={"status": code, "wx_code": data.get("code")})
            raise DomainError("payment.channel_failed", details={"channel_code": data.get("code")})
        return data

    async def request_payment_params(self, prepay_id: str) -> dict[str, str]:
        """Exactly what wx.requestPayment takes, paySign made with the merchant key (in a worker thread)."""
        sdk = await self.sdk()
        ts = str(int(clock.now().timestamp()))
        nonce = secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        sign = await asyncio.to_thread(sdk.sign, [self.config.appid, ts, nonce, package], SignType.RSA_SHA256)
        return {"timeStamp": ts, "nonceStr": nonce, "package": package, "signType": "RSA", "paySign": sign}

    async def query(self, out_trade_no: str) -> dict[str, Any] | None:
        """The order as WeChat Pay sees it; None when it never reached WeChat Pay."""
        code, message = await self._call("query", AsyncWeChatPay.query, out_trade_no=out_trade_no)
        data = self._json(message)
        if code == 404 or data.get("code") == "ORDER_NOT_EXIST":
            return None
        if code != 200:
            raise DomainError("payment.channel_failed", details={"channel_code": data.get("code")})
        return data

    async def close(self, out_trade_no: str) -> None:
        code, message = await self._call("close", AsyncWeChatPay.close, out_trade_no=out_trade_no)
        if code not in (200, 204):
            data = self._json(message)
            if data.get("code") != "ORDER_NOT_EXIST":
                raise DomainError("payment.channel_failed", details={"channel_code": data.get("code")})

    async def refund(self, *, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int,
                     reason: str) -> dict[str, Any]:
        code, message = await self._call(
            "refund", AsyncWeChatPay.refund, out_refund_no=out_refund_no, out_trade_no=out_trade_no,
            amount={"refund": refund_fen, "total": total_fen, "currency": "CNY"}, reason=reason[:80],
            notify_url=self.config.notify_url,
        )
        data = self._json(message)
        if code != 200:
            raise DomainError("payment.channel_failed", details={"channel_code": data.get("code")})
        return data

    async def query_refund(self, out_refund_no: str) -> dict[str, Any] | None:
        code, message = await self._call("query_refund", AsyncWeChatPay.query_refund, out_refund_no=out_refund_no)
        data = self._json(message)
        if code == 404 or data.get("code") == "RESOURCE_NOT_EXISTS":
            return None
        if code != 200:
            raise DomainError("payment.channel_failed", details={"channel_code": data.get("code")})
        return data

    async def trade_bill(self, bill_date: str) -> str:
        """The day's trade bill (ALL) as text; an empty string when WeChat Pay has no bill for the day."""
        code, message = await self._call("trade_bill", AsyncWeChatPay.trade_bill, bill_date=bill_date)
        data = self._json(message)
        if code != 200:
            if data.get("code") in ("NO_STATEMENT_EXIST", "STATEMENT_CREATING"):
                return ""
            raise DomainError("payment.channel_failed", details={"channel_code": data.get("code")})
        code, content = await self._call("download_bill", AsyncWeChatPay.download_bill, url=data["download_url"])
        raw = content if isinstance(content, bytes) else str(content).encode("utf-8")
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8-sig")

    # ---- notifications ----

    def verify_notification(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """Check signature, key and time, then decrypt the resource. CPU work: call it in a worker thread."""
        get = {k.lower(): v for k, v in headers.items()}.get
        signature, ts, nonce, serial = (get("wechatpay-signature"), get("wechatpay-timestamp"),
                                        get("wechatpay-nonce"), get("wechatpay-serial"))
        if not (signature and ts and nonce and serial):
            raise NotificationRefused("missing Wechatpay headers")
        if not _NONCE.fullmatch(nonce):  # signed as UTF-8 below: no undecodable bytes, no control characters
            raise NotificationRefused("malformed nonce")
        if get("wechatpay-signature-type", SIGNATURE_TYPE) != SIGNATURE_TYPE:
            raise NotificationRefused("unsupported signature type")
        if serial != self.config.platform_public_key_id:
            raise NotificationRefused("unknown platform key")
        sent_at = timestamp_of(ts)
        if sent_at is None or abs(sent_at - int(clock.now().timestamp())) > MAX_SKEW_SECONDS:
            raise NotificationRefused("timestamp too far from ours")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise NotificationRefused("body is not UTF-8", 400) from None
        if not wxutils.rsa_verify(ts, nonce, text, signature, self.public_key()):
            raise NotificationRefused("signature does not verify")
        # Only now is the body read.
        try:
            envelope = json.loads(text)
            resource = envelope["resource"]
            if resource.get("algorithm") != "AEAD_AES_256_GCM":
                raise NotificationRefused("unsupported resource algorithm", 400)
            plain = wxutils.aes_decrypt(nonce=resource["nonce"], ciphertext=resource["ciphertext"],
                                        associated_data=resource.get("associated_data") or "",
                                        apiv3_key=self.config.apiv3_key)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise NotificationRefused("malformed notification", 400) from None
        if plain is None:
            raise NotificationRefused("resource does not decrypt", 400)
        try:
            content = json.loads(plain)
        except ValueError:
            raise NotificationRefused("resource is not JSON", 400) from None
        if not isinstance(content, dict):
            raise NotificationRefused("resource is not an object", 400)
        return {"event_type": str(envelope.get("event_type", "")), "id": str(envelope.get("id", "")),
                "resource": content}
