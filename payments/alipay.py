"""Alipay trade calls through the identity package's AlipayClient, exact yuan/fen conversion, notification checks."""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import httpx

import payments.errors  # noqa: F401  (registers the error codes)
from backend.errors import DomainError
from backend.identity.alipay import AlipayClient, AlipayError, rsa2_verify, sign_content

log = logging.getLogger("palmhall.payments.alipay")

_YUAN = re.compile(r"^(-?)(0|[1-9]\d{0,11})(?:\.(\d{1,2}))?$")
NOT_EXIST = "ACQ.TRADE_NOT_EXIST"


def yuan_to_fen(text: str) -> int:
    """"12.5" -> 1250, exactly: no float ever touches an amount."""
    m = _YUAN.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"not an amount in yuan: {text!r}")
    sign, whole, frac = m.groups()
    fen = int(whole) * 100 + int((frac or "").ljust(2, "0"))
    return -fen if sign else fen


def fen_to_yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def verify_notification(params: Mapping[str, str], client: AlipayClient) -> bool:
    """RSA2 over the sorted parameters without sign and sign_type, with Alipay's public key (CPU: worker thread)."""
    signature = params.get("sign", "")
    if params.get("sign_type", "RSA2") != "RSA2" or not signature:
        return False
    content = sign_content(dict(params), exclude=frozenset({"sign", "sign_type"}))
    return rsa2_verify(client._alipay_key, content.encode("utf-8"), signature)


async def _execute(client: AlipayClient, method: str, biz: dict[str, Any], **params: Any) -> dict[str, Any]:
    try:
        return await client.execute(method, biz, **params)
    except AlipayError as exc:
        if exc.code == "auth.alipay_unavailable":
            raise DomainError("payment.channel_unavailable", headers={"Retry-After": "2"}) from None
        if exc.code == "auth.alipay_failed" and exc.sub_code:
            raise PlatformRefused(exc.sub_code) from None
        raise DomainError("payment.channel_failed", details={"channel_code": exc.sub_code}) from None


class PlatformRefused(DomainError):
    """A business failure Alipay answered, with its sub_code."""

    def __init__(self, sub_code: str) -> None:
        super().__init__("payment.channel_failed", details={"channel_code": sub_code})
        self.sub_code = sub_code


async def create(client: AlipayClient, *, out_trade_no: str, amount_fen: int, subject: str, notify_url: str,
                 timeout_minutes: int, buyer_open_id: str | None, buyer_id: str | None) -> str:
    """alipay.trade.create for my.tradePay: the trade_no."""
    biz: dict[str, Any] = {"out_trade_no": out_trade_no, "total_amount": fen_to_yuan(amount_fen),
                           "subject": subject, "product_code": "JSAPI_PAY", "op_app_id": client.app_id,
                           "timeout_express": f"{timeout_minutes}m"}
    if buyer_open_id:
        biz["buyer_open_id"] = buyer_open_id
    elif buyer_id:
        biz["buyer_id"] = buyer_id
    node = await _execute(client, "alipay.trade.create", biz, notify_url=notify_url)
    trade_no = node.get("trade_no")
    if not trade_no:
        raise DomainError("payment.channel_failed", details={"channel_code": None})
    return str(trade_no)


async def precreate(client: AlipayClient, *, out_trade_no: str, amount_fen: int, subject: str, notify_url: str,
                    timeout_minutes: int) -> str:
    """alipay.trade.precreate for a scan-to-pay QR: the qr_code URL."""
    node = await _execute(client, "alipay.trade.precreate", {
        "out_trade_no": out_trade_no, "total_amount": fen_to_yuan(amount_fen), "subject": subject,
        "timeout_express": f"{timeout_minutes}m"}, notify_url=notify_url)
    qr = node.get("qr_code")
    if not qr:
        raise DomainError("payment.channel_failed", details={"channel_code": None})
    return str(qr)


async def query(client: AlipayClient, out_trade_no: str) -> dict[str, Any] | None:
    try:
        return await _execute(client, "alipay.trade.query", {"out_trade_no": out_trade_no})
    except PlatformRefused as exc:
        if exc.sub_code == NOT_EXIST:
            return None
        raise


async def close(client: AlipayClient, out_trade_no: str) -> None:
    try:
        await _execute(client, "alipay.trade.close", {"out_trade_no": out_trade_no})
    except PlatformRefused as exc:
        if exc.sub_code != NOT_EXIST:  # never reached Alipay: nothing to close there
            raise


async def refund(client: AlipayClient, *, out_trade_no: str, out_request_no: str, amount_fen: int,
                 reason: str) -> dict[str, Any]:
    return await _execute(client, "alipay.trade.refund", {
        "out_trade_no": out_trade_no, "out_request_no": out_request_no,
        "refund_amount": fen_to_yuan(amount_fen), "refund_reason": reason})


async def query_refund(client: AlipayClient, *, out_trade_no: str, out_request_no: str) -> dict[str, Any]:
    return await _execute(client, "alipay.trade.fastpay.refund.query",
                          {"out_trade_no": out_trade_no, "out_request_no": out_request_no})


async def bill(client: AlipayClient, day: str) -> str:
    """The day's trade detail bill (业务明细) as text: the zip Alipay links to holds GBK CSV files."""
    try:
        node = await _execute(client, "alipay.data.dataservice.bill.downloadurl.query",
                              {"bill_type": "trade", "bill_date": day})
    except PlatformRefused as exc:
        if exc.sub_code == "isp.bill_not_exist":
            return ""
        raise
    url = str(node.get("bill_download_url", ""))
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(url)
    if answer.status_code != 200:
        raise DomainError("payment.channel_unavailable")
    with zipfile.ZipFile(io.BytesIO(answer.content)) as z:
        for name in z.namelist():
            if "汇总" not in name:
                return z.read(name).decode("gbk")
    return ""


def parse_bill(text: str) -> list[dict[str, Any]]:
    """Lines of a trade detail bill: {platform_no, out_trade_no, kind, amount_fen, ref}."""
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    lines: list[dict[str, Any]] = []
    for row in csv.DictReader(rows):
        kind = (row.get("业务类型") or "").strip()
        if kind not in ("交易", "退款"):
            continue
        fen = abs(yuan_to_fen((row.get("订单金额（元）") or "0").strip()))
        out_trade_no = (row.get("商户订单号") or "").strip()
        refund_no = (row.get("退款批次号/请求号") or "").strip()
        lines.append({
            "platform_no": (row.get("支付宝交易号") or "").strip(), "out_trade_no": out_trade_no,
            "kind": "payment" if kind == "交易" else "refund", "amount_fen": fen,
            "ref": refund_no if kind == "退款" else out_trade_no,
        })
    return lines
