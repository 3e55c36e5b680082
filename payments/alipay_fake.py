"""Alipay's trade methods on the fake gateway (backend.identity.alipay_fake), signed notifications, and bills.

Refunds are settled at once (`fund_change` Y), or, with `refunds_wait` (development), wait until a developer says
how they end (`POST .../simulate/refund/{out_request_no}`): a success is then notified like Alipay does (the trade's
notification with `out_biz_no`, `refund_fee` and `gmt_refund`); a failure is not notified (Alipay does not) and
shows in the refund query and in the answer to asking again."""

from __future__ import annotations

import csv
import io
import secrets
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw
from sanic.response import json as json_response

from backend import clock, fake_state
from backend.identity.alipay import load_private_key, rsa2_sign, sign_content
from backend.identity.alipay_fake import FakeAlipay, GatewayError

SELLER_ID = "2088000000000001"
HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,"
    "券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _fen(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


@dataclass
class AliTrade:
    out_trade_no: str
    total_fen: int
    subject: str
    notify_url: str
    buyer: str | None
    kind: str  # create or precreate
    trade_no: str
    status: str = "WAIT_BUYER_PAY"  # TRADE_SUCCESS, TRADE_CLOSED, TRADE_FINISHED
    paid_at: str | None = None
    refunded_fen: int = 0
    qr_code: str | None = None


@dataclass
class AliRefund:
    out_request_no: str
    out_trade_no: str
    trade_no: str
    amount_fen: int
    at: str  # when it was asked for, then when the money went back
    status: str = "SUCCESS"  # PENDING (refunds_wait), SUCCESS, FAILED
    fail_code: str = ""  # the sub_code a FAILED refund is answered with when asked again


# How a waiting refund fails: the merchant's Alipay balance cannot cover it (the common real failure).
REFUND_FAILURE = ("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足")


@dataclass
class AlipayTrades:
    """The fake's trades; `install` puts its methods on a FakeAlipay."""

    gateway: FakeAlipay
    seller_id: str = SELLER_ID
    base_url: str = ""  # where bill download links point
    notify_redirect: str = ""
    trades: dict[str, AliTrade] = field(default_factory=dict)
    refunds: dict[str, AliRefund] = field(default_factory=dict)
    bill_extra: list[list[str]] = field(default_factory=list)
    bill_drop: set[str] = field(default_factory=set)
    bill_amount: dict[str, int] = field(default_factory=dict)
    refunds_wait: bool = False  # refunds wait for simulate_refund instead of settling at once
    state_file: str = ""  # where trades and refunds are kept between runs (development); empty: memory only

    def __post_init__(self) -> None:
        self._key = load_private_key(self.gateway.alipay_private_key)
        saved = fake_state.load(self.state_file)
        if saved is not None:
            self.trades = {no: AliTrade(**t) for no, t in saved.get("trades", {}).items()}
            self.refunds = {no: AliRefund(**r) for no, r in saved.get("refunds", {}).items()}
        h = self.gateway.handlers
        h["alipay.trade.create"] = self._create
        h["alipay.trade.precreate"] = self._precreate
        h["alipay.trade.query"] = self._query
        h["alipay.trade.close"] = self._close
        h["alipay.trade.refund"] = self._refund
        h["alipay.trade.fastpay.refund.query"] = self._refund_query
        h["alipay.data.dataservice.bill.downloadurl.query"] = self._bill_url

    # ---- gateway methods ----

    def _new(self, params: dict[str, str], biz: dict[str, Any], kind: str) -> AliTrade:
        no = str(biz.get("out_trade_no", ""))
        amount = str(biz.get("total_amount", ""))
        if not no or not amount or not biz.get("subject"):
            raise GatewayError("isv.missing-parameter", "缺少必选参数")
        fen = _fen(amount)
        existing = self.trades.get(no)
        if existing is not None:
            if existing.total_fen != fen or existing.kind != kind:
                raise GatewayError("ACQ.TRADE_HAS_SUCCESS" if existing.status == "TRADE_SUCCESS"
                                   else "ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            return existing
        buyer = biz.get("buyer_open_id") or biz.get("buyer_id")
        if kind == "create" and not buyer:
            raise GatewayError("ACQ.INVALID_PARAMETER", "买家信息缺失")
        trade = AliTrade(out_trade_no=no, total_fen=fen, subject=str(biz["subject"]),
                         notify_url=params.get("notify_url", ""), buyer=buyer, kind=kind,
                         trade_no=clock.now().strftime("%Y%m%d") + "22001" + secrets.token_hex(8)[:14])
        if kind == "precreate":
            trade.qr_code = f"https://qr.alipay.com/bax{secrets.token_hex(10)}"
        self.trades[no] = trade
        self.save()
        return trade

    def _create(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        t = self._new(params, biz, "create")
        return {"code": "10000", "msg": "Success", "out_trade_no": t.out_trade_no, "trade_no": t.trade_no}

    def _precreate(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        t = self._new(params, biz, "precreate")
        return {"code": "10000", "msg": "Success", "out_trade_no": t.out_trade_no, "qr_code": t.qr_code}

    def _find(self, biz: dict[str, Any]) -> AliTrade:
        t = self.trades.get(str(biz.get("out_trade_no", "")))
        if t is None:
            raise GatewayError("ACQ.TRADE_NOT_EXIST", "交易不存在")
        return t

    def _query(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        t = self._find(biz)
        node = {"code": "10000", "msg": "Success", "out_trade_no": t.out_trade_no, "trade_no": t.trade_no,
                "trade_status": t.status, "total_amount": yuan(t.total_fen)}
        if t.paid_at:
            node["send_pay_date"] = t.paid_at
        return node

    def _close(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        t = self._find(biz)
        if t.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            raise GatewayError("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        t.status = "TRADE_CLOSED"
        self.save()
        return {"code": "10000", "msg": "Success", "out_trade_no": t.out_trade_no, "trade_no": t.trade_no}

    def _refund(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        t = self._find(biz)
        no = str(biz.get("out_request_no") or t.out_trade_no)
        done = self.refunds.get(no)
        if done is not None and done.out_trade_no != t.out_trade_no:
            raise GatewayError("ACQ.REFUND_REQUEST_NO_DUPLICATE", "退款请求号重复")
        if done is not None and done.status == "FAILED":
            raise GatewayError(done.fail_code or REFUND_FAILURE[0], REFUND_FAILURE[1])
        changed = "N"  # asked again: nothing moves this time (Alipay's answer to a repeated request)
        if done is None:
            if t.status != "TRADE_SUCCESS":
                raise GatewayError("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            fen = _fen(str(biz.get("refund_amount", "0")))
            held = sum(r.amount_fen for r in self.refunds.values()
                       if r.out_trade_no == t.out_trade_no and r.status == "PENDING")
            if fen <= 0 or t.refunded_fen + held + fen > t.total_fen:
                raise GatewayError("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            done = self.refunds[no] = AliRefund(out_request_no=no, out_trade_no=t.out_trade_no, trade_no=t.trade_no,
                                                amount_fen=fen, at=_local(clock.now()), status="PENDING")
            if not self.refunds_wait:
                self._settle_refund(done, success=True)
                changed = "Y"
            self.save()
        node = {"code": "10000", "msg": "Success", "out_trade_no": t.out_trade_no, "trade_no": t.trade_no,
                "fund_change": changed, "refund_fee": yuan(t.refunded_fen)}
        if done.status == "SUCCESS":
            node["gmt_refund_pay"] = done.at
        return node

    def _settle_refund(self, r: AliRefund, *, success: bool) -> None:
        if r.status != "PENDING":
            return
        if not success:
            r.status, r.fail_code = "FAILED", REFUND_FAILURE[0]
        else:
            t = self.trades[r.out_trade_no]
            r.status, r.at = "SUCCESS", _local(clock.now())
            t.refunded_fen += r.amount_fen
            if t.refunded_fen == t.total_fen:
                t.status = "TRADE_CLOSED"
        self.save()

    def _refund_query(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        t = self._find(biz)
        r = self.refunds.get(str(biz.get("out_request_no", "")))
        node: dict[str, Any] = {"code": "10000", "msg": "Success", "out_trade_no": t.out_trade_no,
                                "trade_no": t.trade_no}
        if r is not None and r.out_trade_no == t.out_trade_no:
            node.update(out_request_no=r.out_request_no, refund_amount=yuan(r.amount_fen),
                        total_amount=yuan(t.total_fen))
            if r.status == "SUCCESS":  # no refund_status: not received, still under way, or failed
                node.update(refund_status="REFUND_SUCCESS", gmt_refund_pay=r.at)
        return node

    def _bill_url(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        day = str(biz.get("bill_date", ""))
        return {"code": "10000", "msg": "Success",
                "bill_download_url": f"{self.base_url.rstrip('/')}/bills/{day}?token={secrets.token_hex(8)}"}

    # ---- payer and notifications ----

    def mark_paid(self, out_trade_no: str, *, buyer: str = "2088102177846880", late: bool = False) -> AliTrade:
        """The payer pays; `late` lets a payment through that raced the trade's close."""
        t = self.trades[out_trade_no]
        if t.status == "WAIT_BUYER_PAY" or (late and t.status == "TRADE_CLOSED"):
            t.status = "TRADE_SUCCESS"
            t.paid_at = _local(clock.now())
            t.buyer = t.buyer or buyer
            self.save()
        return t

    def notification(self, trade_ref: str, *, status: str | None = None, key: Any = None,
                     **override: str) -> dict[str, str]:
        """The signed notification Alipay sends for a trade; `override` changes fields before signing."""
        t = self.trades[trade_ref]
        params = {
            "notify_time": _local(clock.now()), "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(16), "app_id": self.gateway.app_id, "charset": "utf-8",
            "version": "1.0", "sign_type": "RSA2", "trade_no": t.trade_no, "out_trade_no": t.out_trade_no,
            "trade_status": status or t.status, "total_amount": yuan(t.total_fen),
            "receipt_amount": yuan(t.total_fen), "buyer_pay_amount": yuan(t.total_fen),
            "seller_id": self.seller_id, "buyer_open_id": t.buyer or "", "subject": t.subject,
            "gmt_create": t.paid_at or _local(clock.now()), "gmt_payment": t.paid_at or _local(clock.now()),
        }
        params.update(override)
        params = {k: v for k, v in params.items() if v != ""}
        params["sign"] = rsa2_sign(key or self._key, sign_content(params, exclude=frozenset({"sign", "sign_type"})))
        return params

    def target(self, notify_url: str) -> str:
        if not self.notify_redirect:
            return notify_url
        return self.notify_redirect.rstrip("/") + urlsplit(notify_url).path

    async def deliver(self, notify_url: str, params: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(self.target(notify_url), data=params)

    async def pay(self, out_trade_no: str, *, notify: bool = True, late: bool = False) -> httpx.Response | None:
        t = self.mark_paid(out_trade_no, late=late)
        if not notify:
            return None
        return await self.deliver(t.notify_url, self.notification(out_trade_no))

    def refund_notification(self, out_request_no: str, **override: str) -> dict[str, str]:
        """What Alipay sends after a refund went through: the trade's notification, to the trade's notify_url,
        naming the refund (`out_biz_no`) with the trade's whole refunded amount and the refund's time."""
        r = self.refunds[out_request_no]
        t = self.trades[r.out_trade_no]
        return self.notification(t.out_trade_no, **{"out_biz_no": r.out_request_no,
                                                    "refund_fee": yuan(t.refunded_fen),
                                                    "gmt_refund": f"{r.at}.000", **override})

    async def finish_refund(self, out_request_no: str, *, success: bool = True, notify: bool = True
                            ) -> httpx.Response | None:
        """A waiting refund ends; a success is notified (unless told not to), a failure never is."""
        r = self.refunds[out_request_no]
        self._settle_refund(r, success=success)
        if not (success and notify):
            return None
        t = self.trades[r.out_trade_no]
        return await self.deliver(t.notify_url, self.refund_notification(out_request_no))

    def save(self) -> None:
        """Keep trades and refunds (a no-op without `state_file`); called after every change to them."""
        if not self.state_file:
            return
        fake_state.save(self.state_file, {"trades": {no: asdict(t) for no, t in self.trades.items()},
                                          "refunds": {no: asdict(r) for no, r in self.refunds.items()}})

    # ---- bills ----

    def bill_csv(self, day: str) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\r\n")
        out.write("#支付宝业务明细查询\r\n#账号：[20880000000000010156]\r\n")
        out.write(f"#起始日期：[{day} 00:00:00]   终止日期：[{day} 23:59:59]\r\n")
        out.write("#-----------------------------------------业务明细列表----------------------------------------\r\n")
        w.writerow(HEADER.split(","))
        for t in self.trades.values():
            if not t.paid_at or not t.paid_at.startswith(day) or t.out_trade_no in self.bill_drop:
                continue
            fen = self.bill_amount.get(t.out_trade_no, t.total_fen)
            w.writerow([t.trade_no, t.out_trade_no, "交易", t.subject, t.paid_at, t.paid_at, "", "", "", "",
                        t.buyer or "", yuan(fen), yuan(fen), "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00",
                        "0.00", "", "0.00", "0.00", ""])
        for r in self.refunds.values():
            if r.status != "SUCCESS" or not r.at.startswith(day):
                continue
            t = self.trades[r.out_trade_no]
            w.writerow([r.trade_no, r.out_trade_no, "退款", t.subject, r.at, r.at, "", "", "", "", t.buyer or "",
                        "-" + yuan(r.amount_fen), "-" + yuan(r.amount_fen), "0.00", "0.00", "0.00", "0.00", "0.00",
                        "", "0.00", "0.00", r.out_request_no, "0.00", "0.00", ""])
        for row in self.bill_extra:
            w.writerow(row)
        out.write("#-----------------------------------------业务明细列表结束------------------------------------\r\n")
        return out.getvalue()

    def bill_zip(self, day: str) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            stem = f"20880000000000010156_{day.replace('-', '')}"
            z.writestr(f"{stem}_业务明细.csv", self.bill_csv(day).encode("gbk"))
            z.writestr(f"{stem}_业务明细(汇总).csv", "#汇总\r\n".encode("gbk"))
        return buf.getvalue()


def _local(moment: datetime) -> str:
    return moment.astimezone(clock.SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def blueprint(state: AlipayTrades, *, url_prefix: str = "") -> Blueprint:
    """Bill downloads (the gateway itself is backend.identity.alipay_fake's)."""
    bp = Blueprint(f"fake_alipay_bills_{uuid.uuid4().hex[:8]}", url_prefix=url_prefix or None)

    async def bill(request: Request, day: str) -> HTTPResponse:
        return raw(state.bill_zip(day), content_type="application/zip")

    async def simulate_pay(request: Request, no: str) -> HTTPResponse:
        # Development only: the payer pays (there is no phone), and the notification goes out.
        if no not in state.trades:
            return HTTPResponse(status=404)
        answer = await state.pay(no)
        return HTTPResponse(f"notified: {answer.text if answer else '-'}", content_type="text/plain")

    async def simulate_refund(request: Request, no: str) -> HTTPResponse:
        # Development only: a waiting refund ends (success, or failure) and a success is notified.
        outcome = request.args.get("outcome", "success")
        if outcome not in ("success", "failure"):
            return json_response({"error": "outcome must be success or failure"}, status=400)
        found = state.refunds.get(no)
        if found is None:
            return json_response({"error": "no such refund"}, status=404)
        if found.status != "PENDING":
            return json_response({"error": "refund already finished", "status": found.status}, status=409)
        answer = await state.finish_refund(no, success=outcome == "success")
        return json_response({"out_request_no": no, "status": found.status,
                              "notified": answer.text if answer is not None else None})

    async def simulate_refunds(request: Request) -> HTTPResponse:
        return json_response({"refunds": [asdict(r) for r in state.refunds.values()]})

    bp.add_route(bill, "/bills/<day:str>", methods=["GET"], name="bill")
    bp.add_route(simulate_pay, "/simulate/pay/<no:str>", methods=["POST"], name="simulate_pay")
    bp.add_route(simulate_refund, "/simulate/refund/<no:str>", methods=["POST"], name="simulate_refund")
    bp.add_route(simulate_refunds, "/simulate/refunds", methods=["GET"], name="simulate_refunds")
    return bp
