"""WeChat's side of the message push, on loopback: verifies our push URL and sends encrypted receipts to it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from backend import clock
from notifications.wechat_push import SENT_EVENT, PushCrypto, sign

# A refusal as a receipt reports it: the status text is what WeChat documents, the code is only non-zero.
REFUSED = (20004, "failed:user refuse to accept the msg")


def generate_aes_key() -> str:
    """An EncodingAESKey as the console makes one: 43 base64 characters."""
    import base64

    return base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@dataclass
class FakeWeChatPush:
    url: str  # our push URL, as saved in the mini program's console
    token: str
    aes_key: str
    app_id: str
    origin: str = "gh_fake0000001"  # the mini program's original id
    pushed: list[tuple[int, str]] = field(default_factory=list)  # (HTTP status, body) of each push

    @property
    def crypto(self) -> PushCrypto:
        return PushCrypto(token=self.token, aes_key=self.aes_key, app_id=self.app_id)

    async def verify_url(self, echostr: str = "", *, token: str | None = None) -> httpx.Response:
        """The GET the console sends when the URL is saved."""
        timestamp, nonce = str(int(clock.now().timestamp())), secrets.token_hex(5)
        echostr = echostr or secrets.token_hex(8)
        params = {"signature": sign(token or self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                  "echostr": echostr}
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.get(self.url, params=params)

    def sent_event(self, receipts: list[dict[str, Any]], *, openid: str = "o_fake_user") -> dict[str, Any]:
        """A subscribe_msg_sent_event: one List entry per message (an object when there is one, as WeChat does)."""
        items = [{"TemplateId": r["template_id"], "MsgID": str(r["msg_id"]), "ErrorCode": int(r.get("error_code", 0)),
                  "ErrorStatus": r.get("error_status", "success")} for r in receipts]
        return {"ToUserName": self.origin, "FromUserName": openid, "CreateTime": int(clock.now().timestamp()),
                "MsgType": "event", "Event": SENT_EVENT,
                "SubscribeMsgSentEvent": {"List": items[0] if len(items) == 1 else items}}

    def sealed(self, event: dict[str, Any] | str, *, as_json: bool = False, nonce: str | None = None,
               timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        return self.crypto.seal(event, nonce=nonce or secrets.token_hex(5),
                                timestamp=str(timestamp if timestamp is not None else int(clock.now().timestamp())),
                                as_json=as_json)

    async def post(self, body: bytes, query: dict[str, str], *, as_json: bool = False) -> httpx.Response:
        headers = {"Content-Type": "application/json" if as_json else "text/xml"}
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.post(self.url, params=query, content=body, headers=headers)
        self.pushed.append((r.status_code, r.text))
        return r

    async def receipt(self, msg_id: str | int, template_id: str, *, error_code: int = 0,
                      error_status: str = "success", as_json: bool = False) -> httpx.Response:
        """Push the delivery receipt of one message, encrypted (safe mode)."""
        event = self.sent_event([{"msg_id": msg_id, "template_id": template_id, "error_code": error_code,
                                  "error_status": error_status}])
        body, query = self.sealed(event, as_json=as_json)
        return await self.post(body, query, as_json=as_json)
