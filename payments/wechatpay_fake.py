"""A fake WeChat Pay API v3 on loopback: checks our request signatures, signs its answers with its platform
key pair, and sends encrypted, signed notifications the way WeChat Pay does (payments and refunds).

In development (`make run`) its keys are kept in SECRETS_FILE and its trades and refunds in a state file, so other
processes (`palmhall payments reconcile`) and a restarted server find the same platform."""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from backend import clock, fake_state


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _sign(key: rsa.RSAPrivateKey, text: str) -> str:
    return _b64(key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()))


@dataclass
class Keys:
    """Key pairs of both sides, as base64 DER bodies (PKCS#8 private, SubjectPublicKeyInfo public)."""

    merchant_private: str
    merchant_public: str
    platform_private: str
    platform_public: str

    @classmethod
    def generate(cls) -> Keys:
        def pair() -> tuple[str, str]:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            private = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            public = key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
            return _b64(private), _b64(public)

        mp, mpub = pair()
        pp, ppub = pair()
        return cls(merchant_private=mp, merchant_public=mpub, platform_private=pp, platform_public=ppub)

    @classmethod
    def from_private(cls, merchant_private: str, platform_private: str) -> Keys:
        """Both pairs from their private halves (base64 PKCS#8 DER), as kept between runs."""
        def public(private: str) -> str:
            key = serialization.load_der_private_key(base64.b64decode(private), password=None)
            return _b64(key.public_key().public_bytes(serialization.Encoding.DER,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))

        return cls(merchant_private=merchant_private, merchant_public=public(merchant_private),
                   platform_private=platform_private, platform_public=public(platform_private))


@dataclass
class Trade:
    out_trade_no: str
    appid: str
    mchid: str
    total: int
    description: str
    notify_url: str
    trade_type: str  # JSAPI or NATIVE
    openid: str | None
    prepay: str
    state: str = "NOTPAY"  # SUCCESS, REFUND, NOTPAY, CLOSED
    transaction_id: str | None = None
    success_time: str | None = None
    refunded: int = 0


@dataclass
class FakeRefund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str
    refund: int
    total: int
    notify_url: str | None
    status: str = "PROCESSING"  # SUCCESS, CLOSED, ABNORMAL
    success_time: str | None = None


@dataclass
class FakeWeChatPay:
    """State of one fake; tests pay orders, send (or tamper with) notifications and read what was asked."""

    mchid: str
    appid: str
    apiv3_key: str
    keys: Keys
    merchant_serial_no: str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
    public_key_id: str = "PUB_KEY_ID_0114232134912410000000000000"
    base_url: str = ""  # set once the server listens: bill download links point here
    # Where notifications really go: replaces scheme and host of the notify_url (a test server's port).
    notify_redirect: str = ""
    trades: dict[str, Trade] = field(default_factory=dict)
    refunds: dict[str, FakeRefund] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    bill_extra: list[list[str]] = field(default_factory=list)  # rows planted in the next bills
    bill_drop: set[str] = field(default_factory=set)  # out_trade_no left out of bills
    bill_amount: dict[str, int] = field(default_factory=dict)  # out_trade_no -> amount shown in bills
    refund_auto_succeed: bool = False
    delay_answers: float = 0.0
    state_file: str = ""  # where trades and refunds are kept between runs (development); empty: memory only

    def __post_init__(self) -> None:
        self._merchant_public = serialization.load_der_public_key(base64.b64decode(self.keys.merchant_public))
        self._platform_private = serialization.load_der_private_key(base64.b64decode(self.keys.platform_private),
                                                                    password=None)
        saved = fake_state.load(self.state_file)
        if saved is not None:
            self.trades = {no: Trade(**t) for no, t in saved.get("trades", {}).items()}
            self.refunds = {no: FakeRefund(**r) for no, r in saved.get("refunds", {}).items()}

    def save(self) -> None:
        """Keep trades and refunds (a no-op without `state_file`); called after every change to them."""
        if not self.state_file:
            return
        fake_state.save(self.state_file, {"trades": {no: asdict(t) for no, t in self.trades.items()},
                                          "refunds": {no: asdict(r) for no, r in self.refunds.items()}})

    @classmethod
    def create(cls, *, mchid: str = "1900000109", appid: str = "wx1234567890abcdef", keys: Keys | None = None,
               apiv3_key: str | None = None, state_file: str = "") -> FakeWeChatPay:
        return cls(mchid=mchid, appid=appid, apiv3_key=apiv3_key or secrets.token_hex(16),
                   keys=keys or Keys.generate(), state_file=state_file)

    def client_settings(self, base_url: str) -> dict[str, str]:
        return {
            "wechatpay_api_base": base_url, "wechatpay_mchid": self.mchid,
            "wechatpay_merchant_private_key": self.keys.merchant_private,
            "wechatpay_merchant_serial_no": self.merchant_serial_no, "wechatpay_apiv3_key": self.apiv3_key,
            "wechatpay_public_key": self.keys.platform_public, "wechatpay_public_key_id": self.public_key_id,
        }

    # ---- signatures ----

    def check_authorization(self, method: str, path: str, header: str, body: str) -> bool:
        scheme, _, rest = header.partition(" ")
        if scheme != "WECHATPAY2-SHA256-RSA2048":
            return False
        parts = {}
        for item in rest.split(","):
            k, _, v = item.strip().partition("=")
            parts[k] = v.strip('"')
        if parts.get("mchid") != self.mchid or parts.get("serial_no") != self.merchant_serial_no:
            return False
        message = f"{method}\n{path}\n{parts.get('timestamp')}\n{parts.get('nonce_str')}\n{body}\n"
        try:
            self._merchant_public.verify(base64.b64decode(parts.get("signature", "")), message.encode("utf-8"),  # type: ignore[union-attr, call-arg]
                                         padding.PKCS1v15(), hashes.SHA256())  # type: ignore[arg-type]
        except Exception:
            return False
        return True

    def signed_headers(self, body: str, *, timestamp: int | None = None, key: rsa.RSAPrivateKey | None = None,
                       serial: str | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(16)
        signature = _sign(key or self._platform_private, f"{ts}\n{nonce}\n{body}\n")  # type: ignore[arg-type]
        return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
                "Wechatpay-Serial": serial or self.public_key_id,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048", "Request-ID": uuid.uuid4().hex}

    def answer(self, status: int, data: dict[str, Any] | None) -> HTTPResponse:
        body = "" if data is None else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        headers = self.signed_headers(body)
        if data is None:
            return HTTPResponse(status=status, headers=headers)
        return HTTPResponse(body, status=status, headers=headers, content_type="application/json; charset=utf-8")

    def error(self, status: int, code: str, message: str) -> HTTPResponse:
        return self.answer(status, {"code": code, "message": message})

    # ---- what a payer and WeChat Pay do ----

    def mark_paid(self, out_trade_no: str, *, when: datetime | None = None, late: bool = False) -> Trade:
        """The payer pays; `late` lets a payment through that raced the order's close."""
        trade = self.trades[out_trade_no]
        if trade.state == "NOTPAY" or (late and trade.state == "CLOSED"):
            trade.state = "SUCCESS"
            trade.transaction_id = "42000" + secrets.token_hex(12)[:23]
            trade.success_time = (when or clock.now()).astimezone(clock.SHANGHAI).isoformat(timespec="seconds")
            self.save()
        return trade

    def transaction(self, trade: Trade) -> dict[str, Any]:
        return {
            "appid": trade.appid, "mchid": trade.mchid, "out_trade_no": trade.out_trade_no,
            "transaction_id": trade.transaction_id, "trade_type": trade.trade_type,
            "trade_state": trade.state, "trade_state_desc": trade.state, "bank_type": "OTHERS",
            "attach": "", "success_time": trade.success_time,
            "payer": {"openid": trade.openid or "o-native-" + trade.out_trade_no},
            "amount": {"total": trade.total, "payer_total": trade.total, "currency": "CNY",
                       "payer_currency": "CNY"},
        }

    def encrypt(self, resource: dict[str, Any], associated_data: str = "transaction",
                key: str | None = None) -> dict[str, str]:
        nonce = secrets.token_hex(6)
        plain = json.dumps(resource, ensure_ascii=False).encode("utf-8")
        sealed = AESGCM((key or self.apiv3_key).encode()).encrypt(nonce.encode(), plain, associated_data.encode())
        return {"original_type": associated_data, "algorithm": "AEAD_AES_256_GCM", "ciphertext": _b64(sealed),
                "associated_data": associated_data, "nonce": nonce}

    def notification(self, resource: dict[str, Any], *, event_type: str = "TRANSACTION.SUCCESS",
                     original_type: str = "transaction", **sign: Any) -> tuple[dict[str, str], bytes]:
        envelope = {
            "id": str(uuid.uuid4()), "create_time": clock.now().astimezone(clock.SHANGHAI).isoformat(
                timespec="seconds"),
            "resource_type": "encrypt-resource", "event_type": event_type,
            "summary": "支付成功" if event_type == "TRANSACTION.SUCCESS" else "退款状态变更",
            "resource": self.encrypt(resource, original_type, sign.pop("apiv3_key", None)),
        }
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
        if "timestamp" not in sign:
            sign["timestamp"] = int(clock.now().timestamp())
        headers = {**self.signed_headers(body, **sign), "Content-Type": "application/json"}
        return headers, body.encode("utf-8")

    def payment_notification(self, out_trade_no: str, **sign: Any) -> tuple[dict[str, str], bytes]:
        return self.notification(self.transaction(self.trades[out_trade_no]), **sign)

    def target(self, notify_url: str) -> str:
        if not self.notify_redirect:
            return notify_url
        parts = urlsplit(notify_url)
        return self.notify_redirect.rstrip("/") + parts.path

    async def deliver(self, notify_url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(self.target(notify_url), content=body, headers=headers)

    async def pay(self, out_trade_no: str, *, notify: bool = True, late: bool = False) -> httpx.Response | None:
        """The payer pays; WeChat Pay notifies us (once) unless told not to."""
        trade = self.mark_paid(out_trade_no, late=late)
        if not notify:
            return None
        headers, body = self.payment_notification(out_trade_no)
        return await self.deliver(trade.notify_url, headers, body)

    def refund_resource(self, refund: FakeRefund) -> dict[str, Any]:
        return {
            "mchid": self.mchid, "out_trade_no": refund.out_trade_no, "transaction_id": refund.transaction_id,
            "out_refund_no": refund.out_refund_no, "refund_id": refund.refund_id, "refund_status": refund.status,
            "success_time": refund.success_time, "user_received_account": "支付用户零钱",
            "amount": {"total": refund.total, "refund": refund.refund, "payer_total": refund.total,
                       "payer_refund": refund.refund},
        }

    async def finish_refund(self, out_refund_no: str, *, status: str = "SUCCESS", notify: bool = True
                            ) -> httpx.Response | None:
        refund = self.refunds[out_refund_no]
        self._settle_refund(refund, status)
        if not notify or not refund.notify_url:
            return None
        headers, body = self.notification(self.refund_resource(refund), event_type=f"REFUND.{status}",
                                          original_type="refund")
        return await self.deliver(refund.notify_url, headers, body)

    def _settle_refund(self, refund: FakeRefund, status: str) -> None:
        if refund.status != "PROCESSING":
            return
        refund.status = status
        if status == "SUCCESS":
            refund.success_time = clock.now().astimezone(clock.SHANGHAI).isoformat(timespec="seconds")
            trade = self.trades[refund.out_trade_no]
            trade.refunded += refund.refund
            if trade.refunded >= trade.total:
                trade.state = "REFUND"
        self.save()

    # ---- bills ----

    def bill(self, bill_date: str) -> str:
        head = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
                "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
                "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
        rows: list[list[str]] = []
        for t in self.trades.values():
            if t.transaction_id is None or not (t.success_time or "").startswith(bill_date) \
                    or t.out_trade_no in self.bill_drop:
                continue
            amount = self.bill_amount.get(t.out_trade_no, t.total)
            rows.append([t.success_time or "", t.appid, t.mchid, "0", "", t.transaction_id, t.out_trade_no,
                         t.openid or "", t.trade_type, "SUCCESS", "OTHERS", "CNY", _yuan(amount), "0.00", "0", "0",
                         "0.00", "0.00", "", "", t.description, "", "0.00", "0.60%", _yuan(amount), "0.00", ""])
        for r in self.refunds.values():
            if r.status != "SUCCESS" or not (r.success_time or "").startswith(bill_date):
                continue
            t = self.trades[r.out_trade_no]
            rows.append([r.success_time or "", t.appid, t.mchid, "0", "", r.transaction_id, r.out_trade_no,
                         t.openid or "", t.trade_type, "REFUND", "OTHERS", "CNY", "0.00", "0.00", r.refund_id,
                         r.out_refund_no, _yuan(r.refund), "0.00", "ORIGINAL", "SUCCESS", t.description, "",
                         "0.00", "0.60%", _yuan(t.total), _yuan(r.refund), ""])
        rows.extend(self.bill_extra)
        lines = [head] + [",".join("`" + c for c in row) for row in rows]
        lines.append("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额")
        lines.append(f"`{len(rows)},`0.00,`0.00,`0.00,`0.00,`0.00,`0.00")
        return "\n".join(lines) + "\n"


# What a developer may make of a refund: WeChat Pay's refund_status for each.
REFUND_OUTCOMES = {"success": "SUCCESS", "failure": "ABNORMAL", "closed": "CLOSED"}


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def blueprint(state: FakeWeChatPay, *, url_prefix: str = "") -> Blueprint:
    """The fake's routes, bound to `state`, under `url_prefix` (the client's WECHATPAY_API_BASE path)."""
    bp = Blueprint(f"fake_wechatpay_{uuid.uuid4().hex[:8]}", url_prefix=url_prefix or None)
    prefix = url_prefix.rstrip("/")

    def signed_path(request: Request) -> str:
        path = request.path[len(prefix):] if prefix and request.path.startswith(prefix) else request.path
        return path + (f"?{request.query_string}" if request.query_string else "")

    def authorized(request: Request) -> bool:
        body = request.body.decode("utf-8") if request.body else ""
        state.calls.append(f"{request.method} {signed_path(request).split('?')[0]}")
        return state.check_authorization(request.method, signed_path(request),
                                         request.headers.get("authorization", ""), body)

    def refused() -> HTTPResponse:
        return state.error(401, "SIGN_ERROR", "签名错误")

    async def create(request: Request, kind: str) -> HTTPResponse:
        if not authorized(request):
            return refused()
        data = request.json or {}
        if data.get("mchid") != state.mchid or data.get("appid") != state.appid:
            return state.error(400, "PARAM_ERROR", "appid和mch_id不匹配")
        total = int((data.get("amount") or {}).get("total", 0))
        no = str(data.get("out_trade_no", ""))
        if total <= 0 or not no or not data.get("notify_url"):
            return state.error(400, "PARAM_ERROR", "参数错误")
        openid = (data.get("payer") or {}).get("openid")
        if kind == "JSAPI" and not openid:
            return state.error(400, "PARAM_ERROR", "JSAPI支付必须传openid")
        existing = state.trades.get(no)
        if existing is not None:
            if existing.total != total or existing.trade_type != kind:
                return state.error(400, "INVALID_REQUEST", "201 商户订单号重复")
            trade = existing
        else:
            prepay = ("wx" + secrets.token_hex(16)) if kind == "JSAPI" else \
                f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(6)}"
            trade = state.trades[no] = Trade(
                out_trade_no=no, appid=state.appid, mchid=state.mchid, total=total,
                description=str(data.get("description", "")), notify_url=str(data["notify_url"]), trade_type=kind,
                openid=openid, prepay=prepay)
            state.save()
        if state.delay_answers:
            import asyncio

            await asyncio.sleep(state.delay_answers)
        if kind == "JSAPI":
            return state.answer(200, {"prepay_id": trade.prepay})
        return state.answer(200, {"code_url": trade.prepay})

    async def jsapi(request: Request) -> HTTPResponse:
        return await create(request, "JSAPI")

    async def native(request: Request) -> HTTPResponse:
        return await create(request, "NATIVE")

    async def query(request: Request, no: str) -> HTTPResponse:
        if not authorized(request):
            return refused()
        trade = state.trades.get(no)
        if trade is None:
            return state.error(404, "ORDER_NOT_EXIST", "订单不存在")
        return state.answer(200, state.transaction(trade))

    async def close(request: Request, no: str) -> HTTPResponse:
        if not authorized(request):
            return refused()
        trade = state.trades.get(no)
        if trade is None:
            return state.error(404, "ORDER_NOT_EXIST", "订单不存在")
        if trade.state == "SUCCESS":
            return state.error(400, "ORDERPAID", "订单已支付")
        trade.state = "CLOSED"
        state.save()
        return state.answer(204, None)

    async def refund(request: Request) -> HTTPResponse:
        if not authorized(request):
            return refused()
        data = request.json or {}
        trade = state.trades.get(str(data.get("out_trade_no", "")))
        if trade is None or trade.transaction_id is None:
            return state.error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        no = str(data.get("out_refund_no", ""))
        amount = data.get("amount") or {}
        refund_fen, total = int(amount.get("refund", 0)), int(amount.get("total", 0))
        existing = state.refunds.get(no)
        if existing is None:
            pending = sum(r.refund for r in state.refunds.values()
                          if r.out_trade_no == trade.out_trade_no and r.status in ("PROCESSING", "SUCCESS"))
            if total != trade.total or refund_fen <= 0 or refund_fen + pending > trade.total:
                return state.error(400, "INVALID_REQUEST", "退款金额错误")
            existing = state.refunds[no] = FakeRefund(
                out_refund_no=no, refund_id="50000" + secrets.token_hex(12)[:24], out_trade_no=trade.out_trade_no,
                transaction_id=trade.transaction_id, refund=refund_fen, total=total,
                notify_url=data.get("notify_url"))
            state.save()
            if state.refund_auto_succeed:
                state._settle_refund(existing, "SUCCESS")
        return state.answer(200, state.refund_resource(existing))

    async def query_refund(request: Request, no: str) -> HTTPResponse:
        if not authorized(request):
            return refused()
        found = state.refunds.get(no)
        if found is None:
            return state.error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return state.answer(200, state.refund_resource(found))

    async def tradebill(request: Request) -> HTTPResponse:
        if not authorized(request):
            return refused()
        day = request.args.get("bill_date", "")
        token = base64.urlsafe_b64encode(day.encode()).decode()
        text = state.bill(day)
        import hashlib

        digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
        url = f"{state.base_url.rstrip('/')}/v3/billdownload/file?token={token}"
        return state.answer(200, {"hash_type": "SHA1", "hash_value": digest, "download_url": url})

    async def download(request: Request) -> HTTPResponse:
        if not authorized(request):
            return refused()
        day = base64.urlsafe_b64decode(request.args.get("token", "")).decode()
        return HTTPResponse(gzip.compress(state.bill(day).encode("utf-8")), content_type="application/octet-stream")

    async def simulate_pay(request: Request, no: str) -> HTTPResponse:
        # Development only: the payer pays (there is no phone), and the notification goes out.
        if no not in state.trades:
            return HTTPResponse(status=404)
        answer = await state.pay(no)
        return HTTPResponse(f"notified: {answer.status_code if answer else '-'}", content_type="text/plain")

    async def simulate_refund(request: Request, no: str) -> HTTPResponse:
        # Development only: WeChat Pay finishes a refund (success, or failure: ABNORMAL) and notifies us of it.
        outcome = request.args.get("outcome", "success")
        if outcome not in REFUND_OUTCOMES:
            return json_response({"error": f"outcome must be one of {sorted(REFUND_OUTCOMES)}"}, status=400)
        found = state.refunds.get(no)
        if found is None:
            return json_response({"error": "no such refund"}, status=404)
        if found.status != "PROCESSING":
            return json_response({"error": "refund already finished", "status": found.status}, status=409)
        answer = await state.finish_refund(no, status=REFUND_OUTCOMES[outcome])
        return json_response({"out_refund_no": no, "status": found.status,
                              "notified": answer.status_code if answer is not None else None})

    async def simulate_refunds(request: Request) -> HTTPResponse:
        return json_response({"refunds": [asdict(r) for r in state.refunds.values()]})

    bp.add_route(simulate_pay, "/simulate/pay/<no:str>", methods=["POST"], name="simulate_pay")
    bp.add_route(simulate_refund, "/simulate/refund/<no:str>", methods=["POST"], name="simulate_refund")
    bp.add_route(simulate_refunds, "/simulate/refunds", methods=["GET"], name="simulate_refunds")
    bp.add_route(jsapi, "/v3/pay/transactions/jsapi", methods=["POST"], name="jsapi")
    bp.add_route(native, "/v3/pay/transactions/native", methods=["POST"], name="native")
    bp.add_route(query, "/v3/pay/transactions/out-trade-no/<no:str>", methods=["GET"], name="query")
    bp.add_route(close, "/v3/pay/transactions/out-trade-no/<no:str>/close", methods=["POST"], name="close")
    bp.add_route(refund, "/v3/refund/domestic/refunds", methods=["POST"], name="refund")
    bp.add_route(query_refund, "/v3/refund/domestic/refunds/<no:str>", methods=["GET"], name="query_refund")
    bp.add_route(tradebill, "/v3/bill/tradebill", methods=["GET"], name="tradebill")
    bp.add_route(download, "/v3/billdownload/file", methods=["GET"], name="download")
    return bp
