"""A fake real-name provider (`POST /v1/verify`, HMAC-signed) that speaks the same HTTP on loopback."""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from backend.identity.realname import sign
from backend.signatures import hex_digest_equal, timestamp_of

_blueprints = itertools.count(1)

# How far a request's timestamp may stray from ours before it counts as a replay.
MAX_SKEW_SECONDS = 300


def _pair(name: str, id_number: str) -> str:
    # The fake keeps even its test fixtures as digests: it never holds personal data in the clear.
    return hashlib.sha256(f"{name}\x00{id_number}".encode()).hexdigest()


@dataclass
class FakeRealName:
    """Who may call, which pairs fail to match, whether the provider is down, and call counts."""

    app_id: str = "palmhall"
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    down: bool = False
    # verify (every request), unauthorized (signature, app id, timestamp or nonce refused),
    # matched, mismatched, unavailable, invalid
    calls: Counter[str] = field(default_factory=Counter)
    mismatching: set[str] = field(default_factory=set)
    nonces: set[str] = field(default_factory=set)

    def mismatch(self, name: str, id_number: str) -> None:
        """From now on this name and ID number are reported as not belonging together."""
        self.mismatching.add(_pair(name, id_number))

    def authorized(self, request: Request) -> bool:
        headers = request.headers
        app_id, timestamp = headers.get("X-App-Id", ""), headers.get("X-Timestamp", "")
        nonce, signature = headers.get("X-Nonce", ""), headers.get("X-Signature", "")
        sent_at = timestamp_of(timestamp)
        if app_id != self.app_id or not nonce or sent_at is None:
            return False
        if abs(sent_at - time.time()) > MAX_SKEW_SECONDS:
            return False
        expected = sign(self.secret, timestamp=timestamp, nonce=nonce, body=request.body or b"")
        if not hex_digest_equal(expected, signature):
            return False
        # Checked last so a forged request cannot burn a genuine caller's nonce.
        if nonce in self.nonces:
            return False
        self.nonces.add(nonce)
        return True


def blueprint(state: FakeRealName, *, url_prefix: str = "") -> Blueprint:
    """The fake's route, answering from `state`; mount on any Sanic app (a unique name per call)."""
    bp = Blueprint(f"fake_realname_{id(state):x}_{next(_blueprints)}", url_prefix=url_prefix or None)

    @bp.post("/v1/verify")
    async def verify(request: Request) -> HTTPResponse:
        state.calls["verify"] += 1
        if not state.authorized(request):
            state.calls["unauthorized"] += 1
            return json_response({"code": "unauthorized", "message": "signature mismatch"}, status=401)
        if state.down:
            state.calls["unavailable"] += 1
            return json_response({"code": "unavailable", "message": "upstream unavailable"}, status=503)
        try:
            body = json.loads(request.body or b"")
        except ValueError:
            body = None
        fields = ("name", "id_number", "phone")
        if not isinstance(body, dict) or not all(isinstance(body.get(f), str) and body[f] for f in fields):
            state.calls["invalid"] += 1
            return json_response({"code": "invalid_request", "message": "name, id_number, phone required"}, status=400)
        if _pair(body["name"], body["id_number"]) in state.mismatching:
            state.calls["mismatched"] += 1
            return json_response({"matched": False, "reason": "name_id_mismatch"})
        state.calls["matched"] += 1
        return json_response({"matched": True, "reason": None})

    return bp
