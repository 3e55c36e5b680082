"""Text messages: the SmsProvider interface and its Aliyun SMS (dysmsapi SendSms) adapter."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from backend.signatures import secret_equal

Outcome = Literal["sent", "temporary", "permanent"]

# Aliyun answers that say "try again later"; everything else that is not OK is final.
TEMPORARY_CODES = frozenset({
    "isp.SYSTEM_ERROR", "isp.RAM_PERMISSION_DENY", "isv.BUSINESS_LIMIT_CONTROL", "Throttling.User",
    "SignatureNonceUsed", "ServiceUnavailable",
})


@dataclass(frozen=True)
class SmsResult:
    outcome: Outcome
    answer: dict[str, Any]
    provider_id: str | None = None


class SmsProvider(Protocol):
    async def send(self, *, phone: str, template_code: str, params: dict[str, str]) -> SmsResult: ...

    async def aclose(self) -> None: ...


def _enc(value: str) -> str:
    return quote(value, safe="-_.~")


def aliyun_signature(params: dict[str, str], secret: str, method: str = "POST") -> str:
    """Aliyun RPC signature v1 (HMAC-SHA1 over the sorted, percent-encoded parameters)."""
    canonical = "&".join(f"{_enc(k)}={_enc(params[k])}" for k in sorted(params))
    to_sign = f"{method}&{_enc('/')}&{_enc(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSms:
    """Aliyun's SendSms over HTTP: the real provider, and in tests the loopback fake in sms_fake."""

    def __init__(self, *, endpoint: str, access_key_id: str, access_key_secret: str, sign_name: str,
                 timeout: float = 5.0) -> None:
        self._endpoint = endpoint
        self._key_id = access_key_id
        self._secret = access_key_secret
        self._sign_name = sign_name
        self._http = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, *, phone: str, template_code: str, params: dict[str, str]) -> SmsResult:
        values = {
            "Action": "SendSms", "Version": "2017-05-25", "Format": "JSON", "RegionId": "cn-hangzhou",
            "AccessKeyId": self._key_id, "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
            "SignatureNonce": secrets.token_hex(16),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "PhoneNumbers": phone, "SignName": self._sign_name, "TemplateCode": template_code,
            "TemplateParam": json.dumps(params, ensure_ascii=False, separators=(",", ":")),
        }
        values["Signature"] = aliyun_signature(values, self._secret)
        try:
            response = await self._http.post(self._endpoint, data=values)
        except httpx.HTTPError as exc:
            # The phone number rides in the request: only the error's class is kept.
            return SmsResult("temporary", {"error": type(exc).__name__})
        if response.status_code >= 500:
            return SmsResult("temporary", {"http_status": response.status_code})
        try:
            answer = response.json()
        except ValueError:
            return SmsResult("temporary", {"http_status": response.status_code, "error": "not_json"})
        if not isinstance(answer, dict):
            return SmsResult("temporary", {"error": "not_an_object"})
        code = str(answer.get("Code", ""))
        if code == "OK":
            return SmsResult("sent", answer, str(answer.get("BizId") or "") or None)
        return SmsResult("temporary" if code in TEMPORARY_CODES else "permanent", answer)


# ---- status reports (SmsReport, HTTP batch push) ------------------------------------------------
#
# Aliyun posts a JSON array of reports to the URL set in its console and wants {"code": 0} back
# (anything else, or a non-200, is pushed again after 1, 5 and 10 minutes). Aliyun signs nothing
# in these pushes, so the URL itself carries our secret (`?token=`), compared in constant time,
# and a report only ever moves a text we sent whose BizId it names.

REPORT_ACK = {"code": 0, "msg": "接收成功"}
MAX_REPORTS = 1000  # one push merges reports; more than this in one body is not Aliyun


@dataclass(frozen=True)
class SmsReport:
    biz_id: str
    success: bool
    err_code: str
    err_msg: str
    send_time: str
    report_time: str

    def as_answer(self) -> dict[str, Any]:
        # The phone number and out_id in the report are not kept: the row knows whom it was for.
        return {"biz_id": self.biz_id, "success": self.success, "err_code": self.err_code, "err_msg": self.err_msg,
                "send_time": self.send_time, "report_time": self.report_time}


def report_token_ok(expected: str, given: str | None) -> bool:
    return secret_equal(expected, given)


def parse_reports(body: bytes) -> list[SmsReport]:
    """The SmsReport JSON array; ValueError when it is not one."""
    data = json.loads(body.decode("utf-8"))
    if not isinstance(data, list) or len(data) > MAX_REPORTS:
        raise ValueError("not a JSON array of reports")
    out: list[SmsReport] = []
    for item in data:
        if not isinstance(item, dict) or not str(item.get("biz_id") or "").strip():
            raise ValueError("a report without biz_id")
        success = item.get("success")
        if isinstance(success, str):  # documented as a boolean; tolerate "true"/"false"
            success = success.strip().lower() == "true"
        out.append(SmsReport(
            biz_id=str(item["biz_id"]).strip()[:100], success=success is True,
            err_code=str(item.get("err_code") or "")[:64], err_msg=str(item.get("err_msg") or "")[:200],
            send_time=str(item.get("send_time") or ""), report_time=str(item.get("report_time") or "")))
    return out


def report_json(*, phone: str, biz_id: str, success: bool, err_code: str, err_msg: str, send_time: str,
                report_time: str, out_id: str = "") -> dict[str, Any]:
    """One report as Aliyun writes it (for the fake)."""
    return {"phone_number": phone, "send_time": send_time, "report_time": report_time, "success": success,
            "err_code": err_code, "err_msg": err_msg, "sms_size": "1", "biz_id": biz_id, "out_id": out_id}
