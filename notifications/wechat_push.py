"""The mini program's message push (消息推送): URL verification, safe-mode decryption, delivery receipts.

WeChat signs every request to our push URL with the console's Token: `signature` is the SHA-1 of
token, timestamp and nonce sorted and joined; in safe mode the body carries only `Encrypt` and the
query a `msg_signature` (the same over token, timestamp, nonce and the ciphertext). The signature is
checked before the body is decrypted or read, the ciphertext is opened with wechatpy's WeChatCrypto
(AES-256-CBC with the EncodingAESKey, our AppID inside), and only then is the event parsed.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException

from backend.signatures import hex_digest_equal

SENT_EVENT = "subscribe_msg_sent_event"


class PushRefused(Exception):
    """A push that is not WeChat's, or not readable: nothing in it is believed. `reason` is one word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Receipt:
    """One entry of SubscribeMsgSentEvent.List: what became of one subscribe message."""

    msg_id: str
    template_id: str
    error_code: int
    error_status: str

    @property
    def delivered(self) -> bool:
        return self.error_code == 0

    def as_answer(self) -> dict[str, Any]:
        return {"MsgID": self.msg_id, "TemplateId": self.template_id, "ErrorCode": self.error_code,
                "ErrorStatus": self.error_status}


def sign(*parts: str) -> str:
    """WeChat's push signature: SHA-1 of the parts sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()  # noqa: S324 - WeChat's protocol


def signature_ok(token: str, signature: str, *parts: str) -> bool:
    return bool(token) and hex_digest_equal(sign(token, *parts), signature)


@dataclass(frozen=True)
class PushCrypto:
    token: str
    aes_key: str
    app_id: str

    @property
    def configured(self) -> bool:
        return bool(self.token and self.aes_key)

    def verify_url(self, *, signature: str, timestamp: str, nonce: str) -> bool:
        """The GET WeChat sends when the URL is saved in the console: answer echostr when this is true."""
        return self.configured and signature_ok(self.token, signature, timestamp, nonce)

    def open(self, *, body: bytes, content_type: str, msg_signature: str, timestamp: str, nonce: str
             ) -> dict[str, Any]:
        """Check the signature over the ciphertext, decrypt, parse: the event as a dict (XML or JSON alike)."""
        if not self.configured:
            raise PushRefused("not_configured")
        encrypted = _envelope(body, content_type)
        if not msg_signature or not signature_ok(self.token, msg_signature, timestamp, nonce, encrypted):
            raise PushRefused("bad_signature")
        try:
            crypto = WeChatCrypto(self.token, self.aes_key, self.app_id)
            plain = crypto.decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce)
        except InvalidSignatureException:
            raise PushRefused("bad_signature") from None
        except InvalidAppIdException:
            raise PushRefused("other_app") from None
        except Exception:  # bad padding, bad base64, bad key: not something we can read
            raise PushRefused("undecryptable") from None
        return parse_event(plain)

    def seal(self, event: dict[str, Any] | str, *, nonce: str, timestamp: str, as_json: bool
             ) -> tuple[bytes, dict[str, str]]:
        """What WeChat would send: the encrypted body and the query. For the fake and tests."""
        plain = event if isinstance(event, str) else (json.dumps(event, ensure_ascii=False) if as_json
                                                      else to_xml(event))
        crypto = WeChatCrypto(self.token, self.aes_key, self.app_id)
        sealed = ET.fromstring(crypto.encrypt_message(plain, nonce, timestamp))  # noqa: S314 - our own output
        encrypted = sealed.findtext("Encrypt") or ""
        to_user = event.get("ToUserName", "") if isinstance(event, dict) else ""
        if as_json:
            body = json.dumps({"ToUserName": to_user, "Encrypt": encrypted}).encode()
        else:
            body = (f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
                    f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>").encode()
        query = {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                 "encrypt_type": "aes", "msg_signature": sign(self.token, timestamp, nonce, encrypted)}
        return body, query


def _envelope(body: bytes, content_type: str) -> str:
    """The `Encrypt` field of the outer body, the only thing read before the signature is checked."""
    text = body.decode("utf-8", errors="strict") if body else ""
    try:
        if "json" in content_type or text.lstrip().startswith("{"):
            value = json.loads(text).get("Encrypt")
        else:
            value = _xml_root(text).findtext("Encrypt")
    except (ValueError, AttributeError, ET.ParseError):
        raise PushRefused("malformed") from None
    if not isinstance(value, str) or not value:
        raise PushRefused("unsigned")
    return value


def _xml_root(text: str) -> ET.Element:
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise PushRefused("malformed")  # no entity tricks, whoever sent it
    return ET.fromstring(text)  # noqa: S314 - no DTDs (refused above)


def _xml_to_dict(node: ET.Element) -> Any:
    children = list(node)
    if not children:
        return (node.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        value = _xml_to_dict(child)
        if child.tag in out:  # repeated elements (several <List>) become a list
            if not isinstance(out[child.tag], list):
                out[child.tag] = [out[child.tag]]
            out[child.tag].append(value)
        else:
            out[child.tag] = value
    return out


def to_xml(event: dict[str, Any]) -> str:
    def render(tag: str, value: Any) -> str:
        if isinstance(value, list):
            return "".join(render(tag, v) for v in value)
        if isinstance(value, dict):
            return f"<{tag}>" + "".join(render(k, v) for k, v in value.items()) + f"</{tag}>"
        if isinstance(value, int):
            return f"<{tag}>{value}</{tag}>"
        return f"<{tag}><![CDATA[{value}]]></{tag}>"

    return "<xml>" + "".join(render(k, v) for k, v in event.items()) + "</xml>"


def parse_event(plain: str) -> dict[str, Any]:
    text = plain.strip()
    try:
        if text.startswith("{"):
            event = json.loads(text)
        else:
            event = _xml_to_dict(_xml_root(text))
    except (ValueError, ET.ParseError):
        raise PushRefused("malformed") from None
    if not isinstance(event, dict):
        raise PushRefused("malformed")
    return event


def receipts(event: dict[str, Any]) -> list[Receipt]:
    """The delivery receipts in a subscribe_msg_sent_event (List is one object or several)."""
    if event.get("MsgType") != "event" or event.get("Event") != SENT_EVENT:
        return []
    body = event.get("SubscribeMsgSentEvent") or {}
    items = body.get("List") if isinstance(body, dict) else None
    if isinstance(items, dict):
        items = [items]
    out: list[Receipt] = []
    for item in items or []:
        if not isinstance(item, dict) or not str(item.get("MsgID", "")).strip():
            continue
        try:
            code = int(str(item.get("ErrorCode", "0")).strip() or 0)
        except ValueError:
            code = -1
        out.append(Receipt(msg_id=str(item["MsgID"]).strip(), template_id=str(item.get("TemplateId", "")),
                           error_code=code, error_status=str(item.get("ErrorStatus", ""))[:200]))
    return out
