"""A fake Alipay OpenAPI gateway on loopback: checks our RSA2 signatures and answers signed like Alipay does."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.identity.alipay import (
    load_private_key,
    load_public_key,
    response_node_name,
    rsa2_sign,
    rsa2_verify,
    sign_content,
)

# A handler answers one method: (top-level parameters, parsed biz_content) -> the response node.
Handler = Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]

OAUTH_METHOD = "alipay.system.oauth.token"
# The real gateway labels its JSON as HTML; clients that insist on application/json break here first.
ANSWER_TYPE = "text/html;charset=utf-8"

_MSG = {
    "20000": "Service Currently Unavailable",
    "40001": "Missing Required Arguments",
    "40002": "Invalid Arguments",
    "40004": "Business Failed",
}


class GatewayError(Exception):
    """Raised by a handler to answer an Alipay error (`code`, `msg`, `sub_code`, `sub_msg`)."""

    def __init__(self, sub_code: str, sub_msg: str = "", *, code: str | None = None) -> None:
        super().__init__(sub_code)
        self.sub_code = sub_code
        self.sub_msg = sub_msg or sub_code
        self.code = code or _default_code(sub_code)

    def node(self) -> dict[str, Any]:
        return {"code": self.code, "msg": _MSG.get(self.code, "Business Failed"),
                "sub_code": self.sub_code, "sub_msg": self.sub_msg}


def _default_code(sub_code: str) -> str:
    if sub_code.startswith("isp."):
        return "20000"
    if sub_code.startswith("isv.missing-"):
        return "40001"
    if sub_code.startswith("isv."):
        return "40002"
    return "40004"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class FakeAlipay:
    """State of one fake gateway; tests arrange codes and failures here and read what was asked."""

    app_id: str
    app_public_key: str  # ours, PEM or base64: the fake verifies our requests with it
    alipay_private_key: str  # the fake's own, PEM or base64: it signs every answer
    codes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # auth code -> (user_id, open_id)
    # Development: any code never seen before logs in as open_id "demo-<code>" (still one use).
    accept_any_code: bool = False
    used_codes: set[str] = field(default_factory=set)
    handlers: dict[str, Handler] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)  # method -> requests received
    requests: list[str] = field(default_factory=list)  # method of every request, in order
    last_params: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    tamper: bool = False  # alter the answer node after signing it, as a man in the middle would
    sign_answers: bool = True  # False drops `sign`, as an intermediary stripping it would
    # Only known when generate() made the keys; what a client needs to talk to this fake.
    app_private_key_b64: str = ""
    app_public_key_b64: str = ""
    alipay_public_key_b64: str = ""
    _failures: list[GatewayError] = field(default_factory=list, repr=False)
    _http_failures: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._app_key = load_public_key(self.app_public_key)
        self._signing_key = load_private_key(self.alipay_private_key)
        self.handlers.setdefault(OAUTH_METHOD, self._oauth_token)

    @classmethod
    def generate(cls, *, app_id: str = "2021000000000000") -> FakeAlipay:
        """A fake with fresh RSA 2048 key pairs for both sides (test time, nothing stored)."""
        app = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        alipay = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls._with_keys(app_id, app, alipay)

    @classmethod
    def from_private_keys(cls, *, app_id: str, app_private_key: str, alipay_private_key: str) -> FakeAlipay:
        """A fake with both sides' keys given as base64 PKCS#8 DER (development keeps them between runs)."""
        def load(text: str) -> rsa.RSAPrivateKey:
            key = serialization.load_der_private_key(base64.b64decode(text), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError("not an RSA private key")
            return key

        return cls._with_keys(app_id, load(app_private_key), load(alipay_private_key))

    @classmethod
    def _with_keys(cls, app_id: str, app: rsa.RSAPrivateKey, alipay: rsa.RSAPrivateKey) -> FakeAlipay:
        app_public = _b64(app.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
        return cls(
            app_id=app_id,
            app_public_key=app_public,
            alipay_private_key=_b64(alipay.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())),
            app_private_key_b64=_b64(app.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption())),
            app_public_key_b64=app_public,
            alipay_public_key_b64=_b64(alipay.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
        )

    def with_same_keys(self) -> FakeAlipay:
        """A fresh fake (no codes, no history) with this one's app id and keys: key generation is slow."""
        return FakeAlipay(
            app_id=self.app_id, app_public_key=self.app_public_key, alipay_private_key=self.alipay_private_key,
            app_private_key_b64=self.app_private_key_b64, app_public_key_b64=self.app_public_key_b64,
            alipay_public_key_b64=self.alipay_public_key_b64,
        )

    def fail_next(self, sub_code: str, sub_msg: str = "", *, code: str | None = None) -> None:
        """The next well-signed request of any method answers this Alipay error."""
        self._failures.append(GatewayError(sub_code, sub_msg, code=code))

    def fail_next_http(self, status: int = 502) -> None:
        """The next request gets a bare HTTP error, as from a load balancer in front of the gateway."""
        self._http_failures.append(status)

    def add_code(self, *, user_id: str | None = None, open_id: str | None = None) -> str:
        """A fresh one-use auth code for this identity."""
        code = secrets.token_hex(16)
        self.codes[code] = (user_id, open_id)
        return code

    # ---- the gateway ----

    def answer(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        """(node name, node) for one request, checked the way the real gateway checks it."""
        method = params.get("method", "")
        self.calls[method] += 1
        self.requests.append(method)
        self.last_params = dict(params)
        # System methods answer errors in `error_response`, business methods in their own node.
        error_name = response_node_name(method) if method in self.handlers and not method.startswith(
            "alipay.system.") else "error_response"
        try:
            self._check(params)
            if self._failures:
                raise self._failures.pop(0)
            handler = self.handlers.get(method)
            if handler is None:
                raise GatewayError("isv.invalid-method", "不存在的方法名")
            try:
                biz = json.loads(params["biz_content"]) if params.get("biz_content") else {}
            except ValueError:
                raise GatewayError("isv.invalid-biz-content", "biz_content 不是合法的 JSON") from None
            if not isinstance(biz, dict):
                raise GatewayError("isv.invalid-biz-content", "biz_content 不是 JSON 对象")
            return response_node_name(method), handler(params, biz)
        except GatewayError as exc:
            return error_name, exc.node()

    def _check(self, params: dict[str, str]) -> None:
        for name in ("app_id", "method", "sign", "sign_type", "timestamp"):
            if not params.get(name):
                raise GatewayError(f"isv.missing-{name.replace('_', '-')}", f"缺少参数 {name}")
        if params["app_id"] != self.app_id:
            raise GatewayError("isv.invalid-app-id", "无效的AppID参数")
        if params["sign_type"] != "RSA2":
            raise GatewayError("isv.invalid-signature-type", "无效的签名类型")
        if params.get("charset", "utf-8").lower() != "utf-8":
            raise GatewayError("isv.invalid-charset", "字符集错误")
        content = sign_content(params)
        if not rsa2_verify(self._app_key, content.encode("utf-8"), params["sign"]):
            raise GatewayError(
                "isv.invalid-signature",
                f"验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{content}",
            )

    def render(self, name: str, node: dict[str, Any]) -> str:
        """The answer body: the node's exact text, then `sign` over those bytes, as Alipay lays it out."""
        node_text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
        signature = rsa2_sign(self._signing_key, node_text)
        if self.tamper:
            node_text = json.dumps(_tampered(node), ensure_ascii=False, separators=(",", ":"))
        body = f'{{"{name}":{node_text}'
        if self.sign_answers:
            body += f',"sign":"{signature}"'
        return body + "}"

    def _oauth_token(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        if params.get("grant_type") != "authorization_code":
            raise GatewayError("isv.grant-type-invalid", "grant_type 参数不正确")
        if not params.get("code"):
            raise GatewayError("isv.missing-code", "缺少授权码")
        code = params["code"]
        # Auth codes are one-use: a replayed code is as invalid as a made-up one.
        identity = self.codes.pop(code, None)
        if identity is None and self.accept_any_code and code not in self.used_codes:
            identity = (None, f"demo-{code}")
        if identity is None:
            raise GatewayError("isv.code-invalid", "授权码code无效")
        self.used_codes.add(code)
        user_id, open_id = identity
        node: dict[str, Any] = {}
        if user_id is not None:
            node["user_id"] = user_id
        if open_id is not None:
            node["open_id"] = open_id
        node.update({
            "access_token": "authusrB" + secrets.token_hex(16),
            "expires_in": 1296000,
            "refresh_token": "authusrB" + secrets.token_hex(16),
            "re_expires_in": 2592000,
            "auth_start": "2026-01-01 00:00:00",
        })
        return node


def _tampered(node: dict[str, Any]) -> dict[str, Any]:
    changed = dict(node)
    for key in ("user_id", "open_id", "trade_no", "total_amount", "code"):
        if key in changed:
            changed[key] = f"{changed[key]}9"
            return changed
    changed["tampered"] = "true"
    return changed


def blueprint(state: FakeAlipay, *, url_prefix: str = "") -> Blueprint:
    """The fake gateway's routes (`/gateway.do`, GET and POST), bound to `state`."""
    bp = Blueprint(f"fake_alipay_{uuid.uuid4().hex[:8]}", url_prefix=url_prefix or None)

    async def gateway(request: Request) -> HTTPResponse:
        # Parsed by hand so blank values survive: they change the string the signature covers.
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        if request.method == "POST" and (request.content_type or "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        if state.delay:
            await asyncio.sleep(state.delay)
        if state._http_failures:
            status = state._http_failures.pop(0)
            return HTTPResponse(f"<html><body><h1>{status}</h1></body></html>", status=status,
                                content_type="text/html")
        name, node = state.answer(params)
        return HTTPResponse(state.render(name, node), content_type=ANSWER_TYPE)

    bp.add_route(gateway, "/gateway.do", methods=["GET", "POST"], name="gateway")
    return bp
