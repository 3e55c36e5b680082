"""A fake Aliyun SMS endpoint on loopback: checks the signature, records what it was asked to send."""

from __future__ import annotations

import itertools
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from notifications.sms import aliyun_signature

_blueprints = itertools.count(1)


@dataclass
class FakeSms:
    access_key_id: str = "fake-sms-key"
    access_key_secret: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    sent: list[dict[str, Any]] = field(default_factory=list)  # {"phone", "sign_name", "template_code", "params"}
    failures: list[str] = field(default_factory=list)  # Codes the next requests answer
    calls: int = 0

    def fail_next(self, code: str, times: int = 1) -> None:
        self.failures.extend([code] * times)


def blueprint(state: FakeSms, *, url_prefix: str = "") -> Blueprint:
    bp = Blueprint(f"fake_sms_{id(state):x}_{next(_blueprints)}", url_prefix=url_prefix or None)

    @bp.post("/")
    async def send(request: Request) -> HTTPResponse:
        state.calls += 1
        params = {k: v[0] for k, v in (request.form or {}).items()}
        request_id = secrets.token_hex(8)
        signature = params.pop("Signature", "")
        if params.get("AccessKeyId") != state.access_key_id or signature != aliyun_signature(
                params, state.access_key_secret):
            return json_response({"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched",
                                  "RequestId": request_id}, status=400)
        if state.failures:
            code = state.failures.pop(0)
            return json_response({"Code": code, "Message": code, "RequestId": request_id})
        state.sent.append({"phone": params.get("PhoneNumbers"), "sign_name": params.get("SignName"),
                           "template_code": params.get("TemplateCode"),
                           "params": json.loads(params.get("TemplateParam") or "{}")})
        return json_response({"Code": "OK", "Message": "OK", "BizId": f"biz{len(state.sent)}",
                              "RequestId": request_id}, ensure_ascii=False)

    return bp
