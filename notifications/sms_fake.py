"""A fake Aliyun SMS endpoint on loopback: checks the signature, records what it was asked to send, and
pushes status reports (SmsReport, HTTP batch push) to a report URL the way Aliyun does."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from backend.signatures import secret_equal
from notifications.sms import aliyun_signature, report_json

_CHINA = timezone(timedelta(hours=8))

_blueprints = itertools.count(1)


@dataclass
class FakeSms:
    access_key_id: str = "fake-sms-key"
    access_key_secret: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    sent: list[dict[str, Any]] = field(default_factory=list)  # {"phone", "sign_name", "template_code", "params"}
    failures: list[str] = field(default_factory=list)  # Codes the next requests answer
    calls: int = 0
    biz_ids: list[str] = field(default_factory=list)  # BizId answered for each entry of `sent`
    # Where status reports go: the URL an operator sets in Aliyun's console, secret token included.
    report_url: str = ""
    # Development: report every text as delivered shortly after it is accepted.
    auto_report: bool = False
    reports: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)  # (status, body) pushed
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def fail_next(self, code: str, times: int = 1) -> None:
        self.failures.extend([code] * times)

    async def report(self, index: int = -1, *, success: bool = True, err_code: str = "DELIVERED",
                     err_msg: str = "用户接收成功", url: str | None = None, copies: int = 1) -> int:
        """Push the status report of the `index`-th text sent (copies > 1: merged into one push, as Aliyun may)."""
        now = datetime.now(_CHINA).strftime("%Y-%m-%d %H:%M:%S")
        one = report_json(phone=str(self.sent[index]["phone"]), biz_id=self.biz_ids[index], success=success,
                          err_code=err_code, err_msg=err_msg, send_time=now, report_time=now)
        return await self.push([one] * copies, url=url)

    async def push(self, body: list[dict[str, Any]], *, url: str | None = None) -> int:
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.post(url or self.report_url, content=json.dumps(body, ensure_ascii=False).encode(),
                                  headers={"Content-Type": "application/json"})
        self.reports.append((r.status_code, body))
        return r.status_code


def blueprint(state: FakeSms, *, url_prefix: str = "") -> Blueprint:
    bp = Blueprint(f"fake_sms_{id(state):x}_{next(_blueprints)}", url_prefix=url_prefix or None)

    @bp.post("/")
    async def send(request: Request) -> HTTPResponse:
        state.calls += 1
        params = {k: v[0] for k, v in (request.form or {}).items()}
        request_id = secrets.token_hex(8)
        signature = params.pop("Signature", "")
        if params.get("AccessKeyId") != state.access_key_id or not secret_equal(
                aliyun_signature(params, state.access_key_secret), signature):
            return json_response({"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched",
                                  "RequestId": request_id}, status=400)
        if state.failures:
            code = state.failures.pop(0)
            return json_response({"Code": code, "Message": code, "RequestId": request_id})
        state.sent.append({"phone": params.get("PhoneNumbers"), "sign_name": params.get("SignName"),
                           "template_code": params.get("TemplateCode"),
                           "params": json.loads(params.get("TemplateParam") or "{}")})
        biz_id = f"biz{len(state.sent)}"
        state.biz_ids.append(biz_id)
        if state.auto_report and state.report_url:
            task = asyncio.get_running_loop().create_task(_report_later(state, len(state.sent) - 1))
            state._tasks.add(task)
            task.add_done_callback(state._tasks.discard)
        return json_response({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id},
                             ensure_ascii=False)

    return bp


async def _report_later(state: FakeSms, index: int) -> None:
    await asyncio.sleep(1.0)  # a handset takes a moment; the sender has recorded the BizId by then
    try:
        await state.report(index)
    except httpx.HTTPError:
        pass  # the development server went away; Aliyun would try again, the fake does not
