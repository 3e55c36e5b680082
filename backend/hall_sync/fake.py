"""A fake main hall that speaks the hall's HTTP on loopback, keeps its own store and counts what it gets.

In development its store is a JSON file (`state_file`), so a restart of `make run` does not make the hall forget
every case it had and answer each next step `out_of_order`."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from backend import clock, fake_state
from backend.hall_sync.client import H_APP, H_NONCE, H_TS, signed_headers, verify_signature

_blueprints = itertools.count(1)
MAX_SKEW_SECONDS = 300


@dataclass
class HallCase:
    hall_case_id: str
    case_no: str
    status: str = ""
    last_seq: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FakeHall:
    """The hall's store (cases with every step received), its change feed, and switches for outages."""

    app_id: str = "palmhall"
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    callback_url: str = ""
    down: bool = False  # answer 503 to everything
    delay: float = 0.0  # seconds before answering a push (real time: for the bench)
    cases: dict[str, HallCase] = field(default_factory=dict)
    appointments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # Idempotency-Key -> the answer given
    changes: list[dict[str, Any]] = field(default_factory=list)  # the hall's own status changes
    # pushes (accepted once each), duplicates, out_of_order, unavailable, unauthorized, callbacks
    calls: Counter[str] = field(default_factory=Counter)
    state_file: str = ""  # where the store is kept between runs (development); empty keeps it in memory
    _seen_nonces: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        saved = fake_state.load(self.state_file)
        if saved is None:
            return
        self.cases = {no: HallCase(**c) for no, c in saved.get("cases", {}).items()}
        self.appointments = saved.get("appointments", {})
        self.answers = saved.get("answers", {})
        self.changes = saved.get("changes", [])
        self.calls = Counter(saved.get("calls", {}))
        self._ids = itertools.count(int(saved.get("next_id", len(self.cases) + 1)))

    def save(self) -> None:
        """Keep the store (a no-op without `state_file`); called after every change to it."""
        if not self.state_file:
            return
        next_id = next(self._ids)
        self._ids = itertools.count(next_id)
        fake_state.save(self.state_file, {
            "cases": {no: asdict(c) for no, c in self.cases.items()}, "appointments": self.appointments,
            "answers": self.answers, "changes": self.changes, "calls": dict(self.calls), "next_id": next_id})

    # ---- what the hall's own clerks do --------------------------------------------------------

    def record_change(self, case_no: str, status: str, *, items: list[dict[str, str]] | None = None,
                      reason: str = "") -> dict[str, Any]:
        """The hall moves a case itself: its store and change feed say so (a callback may follow)."""
        case = self.cases[case_no]
        case.status = status
        change = {"event_id": f"H{len(self.changes) + 1:08d}-{secrets.token_hex(4)}", "case_no": case_no,
                  "hall_case_id": case.hall_case_id, "status": status, "items": items or [], "reason": reason,
                  "cursor": len(self.changes) + 1}
        self.changes.append(change)
        self.save()
        return change

    async def change(self, case_no: str, status: str, *, items: list[dict[str, str]] | None = None,
                     reason: str = "", deliver: bool = True) -> tuple[dict[str, Any], httpx.Response | None]:
        """Move a case at the hall and (unless the callback is 'lost') tell palmhall, signed."""
        change = self.record_change(case_no, status, items=items, reason=reason)
        if not deliver:
            return change, None
        return change, await self.send_callback(change)

    def callback_body(self, change: dict[str, Any]) -> bytes:
        body = {k: change[k] for k in ("event_id", "case_no", "hall_case_id", "status", "items", "reason")}
        return json.dumps(body, ensure_ascii=False).encode()

    async def send_callback(self, change: dict[str, Any], *, headers: dict[str, str] | None = None,
                            body: bytes | None = None) -> httpx.Response:
        data = body if body is not None else self.callback_body(change)
        path = httpx.URL(self.callback_url).path
        h = headers or signed_headers(app_id=self.app_id, secret=self.secret, method="POST", path=path, body=data)
        self.calls["callbacks"] += 1
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(self.callback_url, content=data, headers=h)

    # ---- views' helpers -----------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        if request.headers.get(H_APP) != self.app_id:
            return False
        try:
            ts = int(request.headers.get(H_TS, ""))
        except ValueError:
            return False
        if abs(clock.now().timestamp() - ts) > MAX_SKEW_SECONDS:
            return False
        if not verify_signature(secret=self.secret, method=request.method, path=request.path,
                                headers=request.headers, body=request.body or b""):
            return False
        nonce = request.headers.get(H_NONCE, "")
        if nonce in self._seen_nonces:
            return False
        self._seen_nonces.add(nonce)
        return True

    def push_case(self, key: str, push: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if key in self.answers:
            self.calls["duplicates"] += 1
            return 200, self.answers[key]
        case_no = str(push["case_no"])
        case = self.cases.get(case_no)
        if case is None:
            case = self.cases[case_no] = HallCase(hall_case_id=f"HALL-{next(self._ids):06d}", case_no=case_no)
        seq = int(push["seq"])
        if seq <= case.last_seq:
            # Same step again under another key would be a double: refuse to store it twice.
            self.calls["duplicates"] += 1
            return 200, {"hall_case_id": case.hall_case_id, "seq": seq, "duplicate": True}
        if seq != case.last_seq + 1:
            self.calls["out_of_order"] += 1
            self.save()
            return 409, {"error": "out_of_order", "expected": case.last_seq + 1, "got": seq}
        case.last_seq = seq
        case.steps.append({"seq": seq, "kind": push.get("kind"), "status": push.get("status"),
                           "from": push.get("from"), "event_id": key, "materials": push.get("materials", [])})
        if push.get("status"):
            case.status = str(push["status"])
        self.calls["pushes"] += 1
        answer = {"hall_case_id": case.hall_case_id, "seq": seq}
        self.answers[key] = answer
        self.save()
        return 200, answer

    def push_appointment(self, key: str, push: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if key in self.answers:
            self.calls["duplicates"] += 1
            return 200, self.answers[key]
        steps = self.appointments.setdefault(str(push["appointment_id"]), [])
        seq = int(push["seq"])
        if steps and seq <= steps[-1]["seq"]:
            self.calls["duplicates"] += 1
            return 200, {"seq": seq, "duplicate": True}
        steps.append({"seq": seq, "kind": push.get("kind"), "event_id": key})
        self.calls["appointment_pushes"] += 1
        answer = {"seq": seq}
        self.answers[key] = answer
        self.save()
        return 200, answer

    def steps(self, case_no: str) -> list[str]:
        return [f"{s['kind']}:{s['status']}" for s in self.cases[case_no].steps]


def blueprint(hall: FakeHall, *, url_prefix: str = "") -> Blueprint:
    bp = Blueprint(f"fake_hall_{next(_blueprints)}", url_prefix=url_prefix)

    async def guard(request: Request) -> HTTPResponse | None:
        if hall.down:
            hall.calls["unavailable"] += 1
            return json_response({"error": "unavailable"}, status=503)
        if not hall.authorized(request):
            hall.calls["unauthorized"] += 1
            return json_response({"error": "unauthorized"}, status=401)
        return None

    @bp.post("/v1/cases/push")
    async def push_case(request: Request) -> HTTPResponse:
        if hall.delay:
            await asyncio.sleep(hall.delay)
        refused = await guard(request)
        if refused is not None:
            return refused
        status, body = hall.push_case(request.headers.get("idempotency-key", ""), json.loads(request.body))
        return json_response(body, status=status)

    @bp.post("/v1/appointments/push")
    async def push_appointment(request: Request) -> HTTPResponse:
        refused = await guard(request)
        if refused is not None:
            return refused
        status, body = hall.push_appointment(request.headers.get("idempotency-key", ""), json.loads(request.body))
        return json_response(body, status=status)

    @bp.get("/v1/changes")
    async def changes(request: Request) -> HTTPResponse:
        refused = await guard(request)
        if refused is not None:
            return refused
        cursor = int(request.args.get("cursor", "0") or 0)
        limit = int(request.args.get("limit", "200") or 200)
        page = hall.changes[cursor:cursor + limit]
        return json_response({"changes": page, "cursor": str(cursor + len(page))})

    @bp.post("/v1/cases/states")
    async def states(request: Request) -> HTTPResponse:
        refused = await guard(request)
        if refused is not None:
            return refused
        wanted = json.loads(request.body).get("case_nos", [])
        return json_response({"states": {n: hall.cases[n].status for n in wanted if n in hall.cases}})

    # The fake's own console (no signature: it stands for the hall's clerks), so a demo can move a case
    # at the hall and watch the callback arrive.
    @bp.get("/console/cases")
    async def console_cases(request: Request) -> HTTPResponse:
        return json_response({"cases": [{"case_no": c.case_no, "hall_case_id": c.hall_case_id, "status": c.status,
                                         "steps": c.steps} for c in hall.cases.values()], "calls": dict(hall.calls)})

    @bp.post("/console/cases/<case_no:str>/status")
    async def console_move(request: Request, case_no: str) -> HTTPResponse:
        if case_no not in hall.cases:
            return json_response({"error": "unknown case"}, status=404)
        body = json.loads(request.body or b"{}")
        change, answer = await hall.change(case_no, str(body.get("status", "")), items=body.get("items"),
                                           reason=str(body.get("reason", "")),
                                           deliver=bool(body.get("deliver", True)))
        return json_response({"change": change, "callback_status": answer.status_code if answer else None,
                              "callback_answer": answer.json() if answer is not None else None})

    return bp
