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
