"""Alipay OpenAPI gateway client (RSA2-signed calls, verified answers) and resident login by auth code."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from backend import clock
from backend.errors import DomainError, register_codes

log = logging.getLogger("palmhall.identity.alipay")

register_codes({
    "auth.alipay_code_invalid": (400, "支付宝授权码无效或已使用，请重新授权登录"),
    "auth.alipay_signature_invalid": (502, "支付宝返回的数据未通过验签，请稍后重试"),
    "auth.alipay_unavailable": (503, "支付宝服务暂时不可用，请稍后重试"),
    "auth.alipay_failed": (502, "支付宝登录失败，请稍后重试"),
})

DEV_MARKER = "dev-"
# user_id (2088 and 12 digits today) and open_id as Alipay issues them, within their columns (64 and 128 wide).
_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OPEN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
SUCCESS = "10000"
# Alipay's "service currently unavailable": its own advice is to try again later.
UNAVAILABLE = "20000"
RETRY_AFTER = {"Retry-After": "2"}

# Sub codes that mean the resident's auth code is spent, expired or never existed.
CODE_INVALID_SUB_CODES = frozenset({
    "isv.code-invalid",
    "isv.invalid-auth-code",
    "invalid-auth-code",
    "isv.auth-code-invalid",
    "isv.code-expired",
})

# Parameters the SDK sends in the query string; everything else goes in the form body.
COMMON_PARAMS = frozenset({
    "app_id", "method", "format", "charset", "sign_type", "sign", "timestamp", "version",
    "notify_url", "return_url", "auth_token", "app_auth_token",
})
# Set by the client itself; a caller passing them would silently sign something else.
RESERVED_PARAMS = frozenset({"app_id", "method", "format", "charset", "sign_type", "sign", "timestamp", "biz_content"})


@dataclass(frozen=True)
class AlipayUser:
    """Who Alipay says the resident is; newer apps only get `open_id`, older ones `user_id`."""

    user_id: str | None
    open_id: str | None
    access_token: str = field(repr=False)  # a credential: kept out of logs and tracebacks


class AlipayError(DomainError):
    """A failed gateway call; `sub_code` and `sub_msg` are Alipay's, for callers that react to them."""

    def __init__(
        self,
        code: str,
        *,
        sub_code: str | None = None,
        sub_msg: str | None = None,
        alipay_code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code, details=details, headers=headers)
        self.sub_code = sub_code
        self.sub_msg = sub_msg
        self.alipay_code = alipay_code


# ---- keys and signatures (shared with the fake and, later, payment notifications) ----


def _key_der(text: str) -> tuple[bytes | None, bytes | None]:
    """(PEM bytes, DER bytes) from a key given as PEM or bare base64, either possibly marked `dev-`."""
    text = text.strip()
    if text.startswith(DEV_MARKER):
        text = text[len(DEV_MARKER):].strip()
    if text.startswith("-----BEGIN"):
        return text.encode(), None
    try:
        return None, base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None, None


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM or base64 DER, PKCS#8 or PKCS#1 (Alipay's key tool makes both)."""
    pem, der = _key_der(text)
    try:
        if pem is not None:
            key = serialization.load_pem_private_key(pem, password=None)
        elif der is not None:
            key = serialization.load_der_private_key(der, password=None)
        else:
            raise ValueError("not PEM and not base64")
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The message never quotes the key: it ends up in logs.
        raise ValueError("the Alipay app private key is not an RSA private key (PEM or base64 PKCS#8/PKCS#1)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the Alipay app private key is not an RSA key")
    return key


def load_public_key(text: str) -> rsa.RSAPublicKey:
    """An RSA public key from PEM or base64 DER (SubjectPublicKeyInfo, as Alipay's console shows it, or PKCS#1)."""
    pem, der = _key_der(text)
    key: Any = None
    if pem is not None:
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm):
            key = None
    elif der is not None:
        for loader in (serialization.load_der_public_key, _load_pkcs1_public_der):
            try:
                key = loader(der)
                break
            except (ValueError, UnsupportedAlgorithm):
                continue
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the Alipay public key is not an RSA public key (PEM or base64)")
    return key


def _load_pkcs1_public_der(der: bytes) -> Any:
    pem = b"-----BEGIN RSA PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END RSA PUBLIC KEY-----\n"
    return serialization.load_pem_public_key(pem)


def sign_content(params: Mapping[str, str], *, exclude: frozenset[str] = frozenset({"sign"})) -> str:
    """Alipay's string to sign: `k=v` of the non-empty parameters, sorted by key, joined with `&`, unescaped."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] != "")


def rsa2_sign(key: rsa.RSAPrivateKey, content: str) -> str:
    return base64.b64encode(key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def rsa2_verify(key: rsa.RSAPublicKey, content: bytes, signature: str) -> bool:
    """SHA256withRSA only: an RSA (SHA-1) signature is refused even where the SDK would accept it."""
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, content, padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def top_level_spans(body: str) -> list[tuple[str, int, int]]:
    """(key, start, end) of every top-level member of a JSON object, as raw text offsets.

    Alipay signs the exact bytes of the `*_response` node as it sent them, so the node is cut
    out of the raw answer rather than re-serialised. Raises ValueError if `body` is no object.
    """
    decoder = json.JSONDecoder()
    spans: list[tuple[str, int, int]] = []
    i = _skip_ws(body, 0)
    if body[i:i + 1] != "{":
        raise ValueError("not a JSON object")
    i = _skip_ws(body, i + 1)
    if body[i:i + 1] == "}":
        return spans
    while True:
        key, i = decoder.raw_decode(body, i)
        if not isinstance(key, str):
            raise ValueError("object key is not a string")
        i = _skip_ws(body, i)
        if body[i:i + 1] != ":":
            raise ValueError("expected ':'")
        start = _skip_ws(body, i + 1)
        _, end = decoder.raw_decode(body, start)
        spans.append((key, start, end))
        i = _skip_ws(body, end)
        if body[i:i + 1] == "}":
            if body[_skip_ws(body, i + 1):].strip():
                raise ValueError("text after the JSON object")
            return spans
        if body[i:i + 1] != ",":
            raise ValueError("expected ',' or '}'")
        i = _skip_ws(body, i + 1)


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def response_node_name(method: str) -> str:
    return method.replace(".", "_") + "_response"


# ---- the client ----------------------------------------------------------------------


class AlipayClient:
    """Calls the Alipay OpenAPI gateway the way the official SDK does, without blocking the event loop.

    The official Python SDK (alipay-sdk-python 3.7.x) is not used: it ignores the port of the
    gateway URL (so no loopback fake and no private gateway), crashes with TypeError on any
    non-200 answer, and only takes PKCS#1 private keys. This client keeps its wire format:
    common parameters and `sign` in the query string, the rest form-encoded in the body, UTF-8.
    """

    def __init__(
        self,
        *,
        gateway: str,
        app_id: str,
        app_private_key: str,
        alipay_public_key: str,
        timeout: float = 5.0,
    ) -> None:
        self.gateway = gateway
        self.app_id = app_id
        # Parsed once: a bad key should stop startup, not the first resident's login.
        self._private_key = load_private_key(app_private_key)
        self._alipay_key = load_public_key(alipay_public_key)
        # The process environment's proxy settings apply, as for any outbound call.
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def oauth_token(self, auth_code: str) -> AlipayUser:
        """Exchange a mini program's auth code (one use, short-lived) for the resident's Alipay identity."""
        try:
            node = await self.execute("alipay.system.oauth.token", grant_type="authorization_code", code=auth_code)
        except AlipayError as exc:
            if exc.code == "auth.alipay_failed" and exc.sub_code in CODE_INVALID_SUB_CODES:
                raise AlipayError("auth.alipay_code_invalid", sub_code=exc.sub_code, sub_msg=exc.sub_msg,
                                  alipay_code=exc.alipay_code) from None
            raise
        user_id = _text(node.get("user_id"))
        open_id = _text(node.get("open_id"))
        access_token = _text(node.get("access_token"))
        if access_token is None or (user_id is None and open_id is None):
            log.warning("alipay oauth answer without identity", extra={"keys": sorted(node)})
            raise AlipayError("auth.alipay_failed", details={"sub_code": None})
        # Stored as they come (ChannelIdentity.alipay_user_id, .alipay_open_id, .subject): an identity that
        # cannot be is Alipay's fault, answered like any failed call.
        if not (user_id is None or _USER_ID.fullmatch(user_id)) or not (open_id is None or _OPEN_ID.fullmatch(open_id)):
            log.warning("alipay oauth answer with a malformed identity",
                        extra={"user_id_length": len(user_id or ""), "open_id_length": len(open_id or "")})
            raise AlipayError("auth.alipay_failed", details={"sub_code": None, "reason": "malformed_identity"})
        return AlipayUser(user_id=user_id, open_id=open_id, access_token=access_token)

    async def execute(self, method: str, biz_content: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
        """One signed gateway call; returns the verified `*_response` node of a successful answer.

        `params` are the method's own top-level parameters (`code`, `notify_url`, ...). A business
        failure raises AlipayError("auth.alipay_failed") carrying Alipay's `sub_code`.
        """
        reserved = RESERVED_PARAMS & params.keys()
        if reserved:
            raise ValueError(f"parameters set by the client itself: {sorted(reserved)}")
        values = {
            "app_id": self.app_id,
            "method": method,
            "format": "json",
            "charset": "utf-8",
            "sign_type": "RSA2",
            # Alipay reads the timestamp as Beijing time whatever the server's zone is.
            "timestamp": clock.now().astimezone(clock.SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
        }
        for key, value in params.items():
            if value is not None:
                values[key] = _wire(value)
        if biz_content is not None:
            values["biz_content"] = _wire(biz_content)
        # Alipay leaves empty values out of the string it verifies; not sending them keeps both sides equal.
        values = {k: v for k, v in values.items() if v != ""}
        values["sign"] = rsa2_sign(self._private_key, sign_content(values))
        query = {k: v for k, v in values.items() if k in COMMON_PARAMS}
        form = {k: v for k, v in values.items() if k not in COMMON_PARAMS}

        try:
            answer = await self._http.post(
                self.gateway,
                params=query,
                data=form,
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            log.warning("alipay gateway unreachable", extra={"method": method, "error": type(exc).__name__})
            raise AlipayError("auth.alipay_unavailable", headers=dict(RETRY_AFTER)) from None
        if answer.status_code >= 500:
            log.warning("alipay gateway error", extra={"method": method, "status": answer.status_code})
            raise AlipayError("auth.alipay_unavailable", headers=dict(RETRY_AFTER))
        if answer.status_code != 200:
            # The real gateway answers 200 even for errors: another status means a wrong gateway URL.
            log.error("alipay gateway answered an unexpected status", extra={"method": method,
                                                                          "status": answer.status_code})
            raise AlipayError("auth.alipay_failed", details={"sub_code": None})
        return self._verified_node(method, answer.content)

    def _verified_node(self, method: str, raw: bytes) -> dict[str, Any]:
        try:
            body = raw.decode("utf-8")
            spans = top_level_spans(body)
        except (UnicodeDecodeError, ValueError):
            # Not an answer from Alipay at all (a proxy's page, a cut connection): worth a retry.
            log.warning("alipay gateway answered something that is not JSON", extra={"method": method})
            raise AlipayError("auth.alipay_unavailable", headers=dict(RETRY_AFTER)) from None

        members: dict[str, list[tuple[int, int]]] = {}
        for key, start, end in spans:
            members.setdefault(key, []).append((start, end))
        name = response_node_name(method)
        if name not in members:
            name = "error_response"
        nodes, signs = members.get(name, []), members.get("sign", [])
        # A repeated member would let the verified copy differ from the one a parser picks.
        if len(nodes) != 1 or len(signs) != 1:
            self._log_unverified(method, body, members)
            raise AlipayError("auth.alipay_signature_invalid")
        start, end = nodes[0]
        node_text = body[start:end]
        signature = json.loads(body[signs[0][0]:signs[0][1]])
        if not isinstance(signature, str) or not rsa2_verify(self._alipay_key, node_text.encode("utf-8"), signature):
            self._log_unverified(method, body, members)
            raise AlipayError("auth.alipay_signature_invalid")

        # Only now is anything in the answer read.
        node = json.loads(node_text)
        if not isinstance(node, dict):
            raise AlipayError("auth.alipay_failed", details={"sub_code": None})
        code = _text(node.get("code"))
        # A successful oauth answer carries no `code`; every error carries one.
        if name == "error_response" or (code is not None and code != SUCCESS):
            sub_code = _text(node.get("sub_code"))
            sub_msg = _text(node.get("sub_msg"))
            log.warning("alipay call failed", extra={
                "method": method, "alipay_code": code, "sub_code": sub_code,
                # This one quotes the string we signed, auth code and biz_content included.
                "sub_msg": "(omitted)" if sub_code == "isv.invalid-signature" else sub_msg,
            })
            if code == UNAVAILABLE:
                raise AlipayError("auth.alipay_unavailable", sub_code=sub_code, sub_msg=sub_msg, alipay_code=code,
                                  headers=dict(RETRY_AFTER))
            raise AlipayError("auth.alipay_failed", sub_code=sub_code, sub_msg=sub_msg, alipay_code=code,
                              details={"sub_code": sub_code})
        return node

    @staticmethod
    def _log_unverified(method: str, body: str, members: dict[str, list[tuple[int, int]]]) -> None:
        # An unsigned error answer (e.g. for a wrong app id) is worth seeing in the logs, but only
        # its error code is logged and nothing in it is acted on.
        sub_code = None
        if len(members.get("error_response", [])) == 1:
            start, end = members["error_response"][0]
            try:
                error = json.loads(body[start:end])
                sub_code = error.get("sub_code") if isinstance(error, dict) else None
            except ValueError:
                sub_code = None
        log.error("alipay answer failed verification", extra={"method": method, "members": sorted(members),
                                                              "unverified_sub_code": sub_code})


def _wire(value: Any) -> str:
    # As the SDK does: strings as they are, anything else as compact JSON with Chinese kept readable.
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)
