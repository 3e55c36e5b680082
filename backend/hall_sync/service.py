"""Main hall sync: push our events in order, apply the hall's changes through the case state machine, reconcile."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from backend import clock, db, runtime
from backend.audit import service as audit
from backend.cases import service as cases_service
from backend.cases.models import Case, CaseMaterial, CaseStatus
from backend.cases.schemas import NoticeItemIn
from backend.cases.statemachine import STAFF, Actor, transition
from backend.crypto import KeyRing
from backend.errors import DomainError, register_codes
from backend.hall_sync.client import Breaker, HallError, HallGateway, HallOutOfOrder, HallRejected
from backend.hall_sync.models import (
    HallCaseLink,
    HallInboundEvent,
    HallPush,
    HallSyncConflict,
    HallSyncCursor,
    InboundOutcome,
)
from backend.identity.models import StaffRole
from backend.identity.service import StaffPrincipal
from backend.jobs.models import OutboxEvent, OutboxStatus
from backend.jobs.outbox import Event, emit
from backend.settings import Settings
from backend.signatures import hex_digest_equal

log = logging.getLogger("palmhall.hall_sync")

register_codes({
    "hall.signature_invalid": (401, "主大厅回调签名无效"),
    "hall.timestamp_stale": (401, "主大厅回调时间戳超出允许范围"),
    "hall.nonce_replayed": (401, "主大厅回调已处理过（重放）"),
    "hall.conflict": (409, "主大厅的状态变更与本地办件状态冲突，已记录待人工处理"),
    "hall.unknown_status": (422, "无法识别的主大厅状态"),
    "hall.link_invalid": (403, "材料下载链接无效或已过期"),
})

# The hall's clerks act in the hall: to the state machine they are staff, named as the hall.
HALL_ACTOR = Actor(STAFF, "main_hall")
CASE_TOPICS = ("case.submitted", "case.status_changed", "case.correction_needed")
APPOINTMENT_TOPICS = ("appointment.booked", "appointment.cancelled", "appointment.checked_in")
RESYNC_TOPIC = "hall.resync"
ALL_TOPICS = (*CASE_TOPICS, *APPOINTMENT_TOPICS, RESYNC_TOPIC)
OPEN = {CaseStatus.SUBMITTED, CaseStatus.NEEDS_CORRECTION, CaseStatus.ACCEPTED, CaseStatus.IN_REVIEW,
        CaseStatus.AWAITING_PAYMENT, CaseStatus.APPROVED, CaseStatus.CERTIFICATE_ISSUED}
HALL_STATUSES = ("accepted", "needs_correction", "approved", "rejected", "certificate_issued", "delivered")
# While the hall is away, a push's attempts stop counting here: an outage is not the event's fault,
# and the backoff has grown long enough by then. Refusals (4xx) still count and end dead.
OUTAGE_ATTEMPT_CAP = 6


# ---- the gateway of this process ------------------------------------------------------------

_gateways: dict[tuple[Any, ...], HallGateway] = {}


def breaker(settings: Settings | None = None) -> Breaker:
    rt = runtime.current()
    s = settings or rt.settings
    return Breaker(rt.redis, failures=s.hall_breaker_failures, pause_seconds=s.hall_breaker_pause_seconds)


def gateway() -> HallGateway:
    """One client per event loop and configuration (tests run many loops and many halls)."""
    s = runtime.current().settings
    key = (id(asyncio.get_running_loop()), s.hall_api_base, s.hall_app_id, s.hall_app_secret,
           s.hall_timeout_seconds, id(runtime.current().redis))
    gw = _gateways.get(key)
    if gw is None:
        gw = _gateways[key] = HallGateway(base_url=s.hall_api_base, app_id=s.hall_app_id, secret=s.hall_app_secret,
                                          timeout=s.hall_timeout_seconds, breaker=breaker(s))
    return gw


# ---- signed material links ------------------------------------------------------------------


def _link_sig(secret: str, material_id: int, expires: int) -> str:
    return hmac.new(secret.encode(), f"hall-material:{material_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def material_link(*, material_id: int, settings: Settings) -> tuple[str, int]:
    expires = int(clock.now().timestamp()) + settings.hall_material_link_ttl_seconds
    sig = _link_sig(settings.secret_key, material_id, expires)
    base = settings.public_base_url.rstrip("/")
    return f"{base}/api/v1/hall/materials/{material_id}?expires={expires}&sig={sig}", expires


async def material_content(*, material_id: int, expires: int, sig: str, settings: Settings) -> tuple[bytes, str]:
    """The file behind a signed link the hall was given; refused once the link expired."""
    from backend.cases.files import store_for

    good = hex_digest_equal(_link_sig(settings.secret_key, material_id, expires), sig)
    if not good or clock.now().timestamp() > expires:
        raise DomainError("hall.link_invalid")
    material = await CaseMaterial.get_or_none(id=material_id).prefetch_related("upload")
    if material is None or material.upload is None:
        raise DomainError("hall.link_invalid")
    data = await store_for(settings).get(material.upload.sha256)
    return data, material.upload.content_type


async def _materials(case_id: int, settings: Settings) -> list[dict[str, Any]]:
    rows = await CaseMaterial.filter(case_id=case_id, superseded=False).order_by("id")
    out = []
    for m in rows:
        entry: dict[str, Any] = {"code": m.code, "name": m.name, "source": m.source.value,
                                 "round": m.correction_round}
        if m.upload_id is not None:  # type: ignore[attr-defined]
            entry["url"], entry["expires_at"] = material_link(material_id=m.id, settings=settings)
        out.append(entry)
    return out


# ---- outbound -------------------------------------------------------------------------------


async def _echo(event: Event, case_no: str, before: str, after: str) -> bool:
    """Was this move the hall's own (applied from its callback)? Then it is not news to the hall.
    The match is remembered by event id, so a retry of the same event decides the same way."""
    async with db.transaction() as tx:
        if await HallInboundEvent.filter(echo_event_id=event.id).using_db(tx).exists():
            return True
        row = await (HallInboundEvent.filter(case_no=case_no, from_status=before, to_status=after,
                                             outcome=InboundOutcome.APPLIED, echo_consumed=False)
                     .using_db(tx).order_by("id").first())
        if row is None:
            return False
        await HallInboundEvent.filter(id=row.id).using_db(tx).update(echo_consumed=True, echo_event_id=event.id)
        return True


def _kind(event: Event) -> str:
    p = event.payload
    if event.topic == "case.submitted":
        return "created"
    if event.topic == RESYNC_TOPIC:
        return "snapshot"
    if event.topic == "case.correction_needed":
        return "correction_amended"
    if p.get("from") == CaseStatus.AWAITING_PAYMENT.value and p.get("to") == CaseStatus.IN_REVIEW.value:
        return "payment_done"
    if p.get("from") == CaseStatus.NEEDS_CORRECTION.value and p.get("to") != CaseStatus.WITHDRAWN.value:
        return "corrected"
    return "status"


async def _number(event: Event, subject: str, kind: str, using_db: BaseDBAsyncClient) -> HallPush:
    """The push's sequence number, given once per event: a retry repeats it."""
    push = await HallPush.filter(event_id=event.id).using_db(using_db).first()
    if push is not None:
        return push
    last = await HallPush.filter(subject=subject).using_db(using_db).order_by("-seq").first()
    seq = (last.seq if last else 0) + 1
    committed = await OutboxEvent.filter(event_id=event.id).using_db(using_db).values_list("created_at", flat=True)
    at = committed[0] if committed and isinstance(committed[0], datetime) else clock.now()
    return await HallPush.create(event_id=event.id, subject=subject, seq=seq, kind=kind, committed_at=at,
                                 using_db=using_db)


async def _hold_attempts(event: Event) -> None:
    s = runtime.current().settings
    cap = max(1, min(OUTAGE_ATTEMPT_CAP, s.outbox_max_attempts - 2))
    await OutboxEvent.filter(event_id=event.id, attempts__gt=cap).update(attempts=cap)


async def push_event(event: Event) -> str:
    """Push one event to the hall and wait for its acknowledgement; raise if it did not come.

    The outbox keeps one case's events in order (ordering key), so a failure here holds back the
    case's later steps until this one is acknowledged, while other cases go on. When the hall answers
    that it wants an earlier step (it lost some), the steps from there are sent again first."""
    if event.topic.startswith("appointment."):
        return await _push_appointment(event)
    p = event.payload
    case_no = str(p["case_no"])
    if event.topic == "case.correction_needed" and not p.get("amended"):
        return "skipped"  # the move itself travels as case.status_changed
    if event.topic == "case.status_changed" and await _echo(event, case_no, str(p["from"]), str(p["to"])):
        return "echo"
    subject = f"case:{case_no}"
    kind = _kind(event)
    settings = runtime.current().settings
    async with db.transaction() as tx:
        push = await _number(event, subject, kind, tx)
        link = await HallCaseLink.filter(case_no=case_no).using_db(tx).first()
        if link is None:
            link = await HallCaseLink.create(case_no=case_no, using_db=tx)
        if push.seq > link.last_seq_sent:
            await HallCaseLink.filter(id=link.id).using_db(tx).update(last_seq_sent=push.seq)
    if push.acked_at is not None:
        return "already"
    case = await Case.get(case_no=case_no)
    body = await _case_body(case, push, p, settings)
    resend_from: int | None = None
    for _ in range(MAX_CATCH_UPS + 1):
        try:
            if resend_from is not None:
                await _resend(case, first=resend_from, before=push.seq, settings=settings)
            answer = await gateway().push_case(idempotency_key=str(event.id), push=body)
            break
        except HallOutOfOrder as exc:
            if not 1 <= exc.expected < push.seq:
                raise
            log.warning("hall wants earlier steps of a case; sending them again",
                        extra={"case_no": case_no, "expected": exc.expected, "seq": push.seq})
            resend_from = exc.expected
        except HallError as exc:
            if not isinstance(exc, HallRejected):
                await _hold_attempts(event)
            raise
    else:
        raise HallRejected(409, {"error": "out_of_order", "seq": push.seq, "resent_from": resend_from})
    await _acked(push, case_no, body, answer)
    return "pushed"


# How many times one push follows the hall back to an earlier step before it gives up (and retries later).
MAX_CATCH_UPS = 3


async def _case_body(case: Case, push: HallPush, p: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What the hall is told for one numbered step, from the event that made it (`p`, its payload)."""
    kind = push.kind
    body: dict[str, Any] = {"case_no": case.case_no, "seq": push.seq, "kind": kind, "event_id": str(push.event_id),
                            "hall_id": case.hall_id, "item_id": case.item_id,  # type: ignore[attr-defined]
                            "status": p.get("to") or case.status.value, "from": p.get("from"),
                            "at": push.committed_at.isoformat()}
    if kind in ("created", "corrected", "snapshot"):
        body["materials"] = await _materials(case.id, settings)
        if kind == "created":
            body["status"] = CaseStatus.SUBMITTED.value
    if kind == "correction_amended":
        body["status"] = CaseStatus.NEEDS_CORRECTION.value
        body["codes"] = p.get("codes", [])
    if kind == "snapshot":
        body["status"] = case.status.value
    return body


async def _resend(case: Case, *, first: int, before: int, settings: Settings) -> None:
    """Send the hall the case's steps `first` .. `before - 1` again, each as it was first sent (its own event,
    sequence number and idempotency key), so the hall ends with the whole history and not only the latest step."""
    rows = await HallPush.filter(subject=f"case:{case.case_no}", seq__gte=first, seq__lt=before).order_by("seq")
    if [r.seq for r in rows] != list(range(first, before)):
        raise HallRejected(409, {"error": "out_of_order", "expected": first, "missing_here": True})
    payloads = {e.event_id: e.payload for e in await OutboxEvent.filter(event_id__in=[r.event_id for r in rows])}
    for row in rows:
        payload = payloads.get(row.event_id)
        body = await _case_body(case, row, payload if isinstance(payload, dict) else {}, settings)
        answer = await gateway().push_case(idempotency_key=str(row.event_id), push=body)
        await _acked(row, case.case_no, body, answer)


async def _acked(push: HallPush, case_no: str, body: dict[str, Any], answer: dict[str, Any]) -> None:
    now = clock.now()
    async with db.transaction() as tx:
        await HallPush.filter(id=push.id).using_db(tx).update(acked_at=now)
        link = await HallCaseLink.filter(case_no=case_no).using_db(tx).get()
        changes: dict[str, Any] = {"acked_at": now, "hall_status": body["status"]}
        if push.seq > link.last_seq_acked:
            changes["last_seq_acked"] = push.seq
        if answer.get("hall_case_id"):
            changes["hall_case_id"] = str(answer["hall_case_id"])
        await HallCaseLink.filter(id=link.id).using_db(tx).update(**changes)


async def _push_appointment(event: Event) -> str:
    p = event.payload
    subject = f"appointment:{p['appointment_id']}"
    kind = event.topic.split(".", 1)[1]
    async with db.transaction() as tx:
        push = await _number(event, subject, kind, tx)
    if push.acked_at is not None:
        return "already"
    body = {"appointment_id": p["appointment_id"], "seq": push.seq, "kind": kind, "event_id": str(event.id),
            "hall_id": p.get("hall_id"), "item_code": p.get("item_code"), "starts_at": p.get("starts_at"),
            "ends_at": p.get("ends_at"), "at": push.committed_at.isoformat()}
    try:
        await gateway().push_appointment(idempotency_key=str(event.id), push=body)
    except HallError as exc:
        if not isinstance(exc, HallRejected):
            await _hold_attempts(event)
        raise
    await HallPush.filter(id=push.id).update(acked_at=clock.now())
    return "pushed"


@dataclass(frozen=True)
class Resync:
    event_id: uuid.UUID  # the snapshot's outbox event
    superseded: int  # the case's steps that were waiting for the hall and are now covered by the snapshot
    seq: int | None  # the sequence number the snapshot takes at the hall (None: the next one, when it is sent)


# The outbox handler that pushes to the hall (backend/hall_sync/handlers.py), by the name the worker records.
PUSH_HANDLER = "backend.hall_sync.handlers.push_to_hall"


async def resync(*, case_no: str, actor_kind: str = "operator", actor_id: str = "cli") -> Resync:
    """A full snapshot of one case for the hall, sent now rather than behind a step that is stuck.

    The case's steps still waiting for the hall (pending however far off their next attempt, or dead) are
    superseded: their push is marked done, so the outbox runs their other handlers now and the case's queue
    moves, and the snapshot takes the sequence number of the first of them, so the hall's sequence stays whole.
    A step a worker holds at this moment is left to it; the snapshot follows it."""
    case = await Case.get_or_none(case_no=case_no)
    if case is None:
        raise DomainError("case.not_found")
    key = f"case:{case_no}"
    now_ms = clock.now_ms()
    superseded: list[uuid.UUID] = []
    async with db.transaction() as tx:
        waiting = await (OutboxEvent.filter(ordering_key=key, topic__in=[*CASE_TOPICS, RESYNC_TOPIC],
                                            status__in=[OutboxStatus.PENDING, OutboxStatus.DEAD])
                         .using_db(tx).select_for_update().order_by("seq"))
        for ev in waiting:
            done = list(ev.done_handlers or [])
            if PUSH_HANDLER in done:
                continue  # the hall has it; something else holds this event
            changes: dict[str, Any] = {"done_handlers": [*done, PUSH_HANDLER], "available_at": now_ms,
                                       "last_error": f"hall push superseded by a resync of {case_no}"}
            if ev.status == OutboxStatus.DEAD:
                changes.update(status=OutboxStatus.PENDING, attempts=0, finished_at=None, lease_until=None,
                               locked_by=None)
            # Only if no worker claimed it meanwhile (a claim changes the status).
            if await OutboxEvent.filter(seq=ev.seq, status=ev.status).using_db(tx).update(**changes):
                superseded.append(ev.event_id)
        unsent = await HallPush.filter(subject=key, event_id__in=superseded, acked_at__isnull=True).using_db(tx)
        seq = min((p.seq for p in unsent), default=None)
        if unsent:
            await HallPush.filter(id__in=[p.id for p in unsent]).using_db(tx).delete()
        event_id = await emit(RESYNC_TOPIC, {"case_no": case_no, "case_id": case.id}, using_db=tx, ordering_key=key)
        if seq is not None:
            await HallPush.create(event_id=event_id, subject=key, seq=seq, kind="snapshot", committed_at=clock.now(),
                                  using_db=tx)
            await HallCaseLink.filter(case_no=case_no, last_seq_sent__gte=seq).using_db(tx).update(
                last_seq_sent=seq - 1)
        await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action="hall_sync.resync",
                           target_kind="case", target_id=case_no,
                           details={"event_id": str(event_id), "superseded": [str(e) for e in superseded],
                                    "seq": seq})
    return Resync(event_id=event_id, superseded=len(superseded), seq=seq)


# ---- inbound --------------------------------------------------------------------------------


def _keyring() -> KeyRing:
    return KeyRing.parse(runtime.current().settings.data_keys)


async def _apply(case: Case, status: str, items: list[dict[str, Any]], reason: str, tx: BaseDBAsyncClient) -> None:
    """One hall change through the same state machine and steps a clerk's action takes."""
    why = reason or "主大厅办理"
    if status == "accepted":
        await transition(case, CaseStatus.ACCEPTED, actor=HALL_ACTOR, using_db=tx, reason=why)
    elif status == "needs_correction":
        notice = [NoticeItemIn(code=str(i.get("code", "")), reason=str(i.get("reason", ""))[:200]) for i in items]
        await cases_service.request_correction(case, notice, actor=HALL_ACTOR, using_db=tx)
    elif status == "approved":
        await transition(case, CaseStatus.APPROVED, actor=HALL_ACTOR, using_db=tx, reason=why)
    elif status == "rejected":
        await transition(case, CaseStatus.REJECTED, actor=HALL_ACTOR, using_db=tx, reason=reason or "主大厅不予办理")
    elif status == "certificate_issued":
        await cases_service.issue_certificate(case, actor=HALL_ACTOR, keyring=_keyring(), using_db=tx,
                                               valid_until=None)
    elif status == "delivered":
        await transition(case, CaseStatus.DELIVERED, actor=HALL_ACTOR, using_db=tx, reason=reason or "主大厅已送达")
    else:
        raise DomainError("hall.unknown_status", details={"status": status})


async def apply_change(*, hall_event_id: str, case_no: str, status: str, items: list[dict[str, Any]] | None = None,
                       reason: str = "", hall_case_id: str | None = None, source: str = "callback"
                       ) -> dict[str, Any]:
    """Apply one hall change once (by the hall's event id). A change the state machine refuses leaves the
    case as it was, is recorded as a conflict for staff and raises hall.conflict."""
    if status not in HALL_STATUSES:
        raise DomainError("hall.unknown_status", details={"status": status})
    seen = await HallInboundEvent.get_or_none(hall_event_id=hall_event_id)
    if seen is not None:
        return _seen(seen)
    refused: DomainError | None = None
    our_status = ""
    try:
        async with db.transaction() as tx:
            case = await Case.filter(case_no=case_no).using_db(tx).select_for_update().first()
            if case is None:
                raise DomainError("case.not_found")
            before = case.status
            our_status = before.value
            unchanged = before.value == status and status != "needs_correction"
            if not unchanged:
                await _apply(case, status, items or [], reason, tx)
            after = (await Case.filter(id=case.id).using_db(tx).values_list("status", flat=True))[0]
            outcome = InboundOutcome.UNCHANGED if unchanged else InboundOutcome.APPLIED
            await HallInboundEvent.create(
                hall_event_id=hall_event_id, case_no=case_no, status=status, source=source, outcome=outcome,
                from_status=before.value, to_status=str(after), received_at=clock.now(), using_db=tx)
            await _note_hall(case_no, status, hall_case_id, tx)
            await audit.record(using_db=tx, actor_kind="hall", actor_id="main_hall", action="hall_sync.inbound",
                               target_kind="case", target_id=case_no,
                               details={"hall_event_id": hall_event_id, "status": status, "source": source,
                                        "outcome": outcome.value})
    except IntegrityError:
        # The same hall event, delivered twice at once: the other delivery won.
        seen = await HallInboundEvent.get_or_none(hall_event_id=hall_event_id)
        if seen is None:
            raise
        return _seen(seen)
    except DomainError as exc:
        if exc.code == "case.not_found" or not exc.code.startswith("case."):
            raise
        refused = exc
    if refused is not None:
        await _record_conflict(hall_event_id=hall_event_id, case_no=case_no, status=status, our_status=our_status,
                               source=source, error=refused, items=items or [])
        raise DomainError("hall.conflict", details={"case_no": case_no, "hall_status": status,
                                                    "our_status": our_status, "reason": refused.code})
    return {"outcome": outcome.value, "duplicate": False, "case_no": case_no, "status": str(after)}


def _seen(row: HallInboundEvent) -> dict[str, Any]:
    if row.outcome == InboundOutcome.CONFLICT:
        raise DomainError("hall.conflict", details={"case_no": row.case_no, "hall_status": row.status,
                                                    "our_status": row.from_status, "duplicate": True})
    return {"outcome": row.outcome.value, "duplicate": True, "case_no": row.case_no, "status": row.to_status}


async def _note_hall(case_no: str, status: str, hall_case_id: str | None, tx: BaseDBAsyncClient) -> None:
    link = await HallCaseLink.filter(case_no=case_no).using_db(tx).first()
    if link is None:
        await HallCaseLink.create(case_no=case_no, hall_case_id=hall_case_id, hall_status=status, using_db=tx)
        return
    changes: dict[str, Any] = {"hall_status": status}
    if hall_case_id and not link.hall_case_id:
        changes["hall_case_id"] = hall_case_id
    await HallCaseLink.filter(id=link.id).using_db(tx).update(**changes)


async def _record_conflict(*, hall_event_id: str | None, case_no: str, status: str, our_status: str, source: str,
                           error: DomainError, items: list[dict[str, Any]]) -> None:
    async with db.transaction() as tx:
        case = await Case.filter(case_no=case_no).using_db(tx).first()
        if hall_event_id is not None:
            await HallInboundEvent.create(
                hall_event_id=hall_event_id, case_no=case_no, status=status, source=source,
                outcome=InboundOutcome.CONFLICT, from_status=our_status, to_status=our_status,
                received_at=clock.now(), using_db=tx)
        await HallSyncConflict.create(
            case_no=case_no, hall_id=case.hall_id if case else None,  # type: ignore[attr-defined]
            hall_event_id=hall_event_id, source=source, hall_status=status, our_status=our_status,
            code=error.code, details={"error": error.details, "items": items}, created_at=clock.now(), using_db=tx)
        await audit.record(using_db=tx, actor_kind="hall", actor_id="main_hall", action="hall_sync.conflict",
                           target_kind="case", target_id=case_no,
                           details={"hall_event_id": hall_event_id, "hall_status": status, "our_status": our_status,
                                    "code": error.code, "source": source})
    log.warning("hall change refused by the state machine", extra={"case_no": case_no, "hall_status": status,
                                                                   "our_status": our_status})


# ---- reconciliation -------------------------------------------------------------------------

CURSOR = "changes"


async def reconcile(*, pages: int = 50) -> dict[str, int]:
    """Read the hall's change feed from the last cursor (callbacks that never came), then compare the
    states of open cases the hall holds; differences go through the state machine or into conflicts."""
    gw = gateway()
    row = await HallSyncCursor.get_or_none(name=CURSOR)
    if row is None:
        row = await HallSyncCursor.create(name=CURSOR, cursor="0")
    counts = {"changes": 0, "applied": 0, "conflicts": 0, "unknown_cases": 0, "differences": 0}
    cursor = row.cursor
    for _ in range(pages):
        page = await gw.changes(cursor=cursor)
        for ch in page.get("changes", []):
            counts["changes"] += 1
            try:
                result = await apply_change(hall_event_id=str(ch["event_id"]), case_no=str(ch["case_no"]),
                                            status=str(ch["status"]), items=ch.get("items") or [],
                                            reason=str(ch.get("reason") or ""),
                                            hall_case_id=ch.get("hall_case_id"), source="reconcile")
                if not result["duplicate"] and result["outcome"] == InboundOutcome.APPLIED.value:
                    counts["applied"] += 1
            except DomainError as exc:
                if exc.code == "hall.conflict":
                    if not (exc.details or {}).get("duplicate"):
                        counts["conflicts"] += 1
                elif exc.code == "case.not_found":
                    counts["unknown_cases"] += 1
                else:
                    raise
        new = str(page.get("cursor", cursor))
        if new != cursor:
            cursor = new
            await HallSyncCursor.filter(id=row.id).update(cursor=cursor)
        if not page.get("changes"):
            break
    counts["differences"] = await _compare_open()
    return counts


async def _compare_open(batch: int = 200) -> int:
    """Open cases whose every push the hall acknowledged should read the same there and here."""
    open_values = [s.value for s in OPEN]
    cases = await Case.filter(status__in=open_values).values("case_no", "status", "hall_id")
    ours = {c["case_no"]: c for c in cases}
    links = await HallCaseLink.filter(case_no__in=list(ours), hall_case_id__not_isnull=True)
    settled = [lk.case_no for lk in links if lk.last_seq_acked >= lk.last_seq_sent]
    found = 0
    for i in range(0, len(settled), batch):
        states = await gateway().case_states(case_nos=settled[i:i + batch])
        for case_no, hall_status in states.items():
            our = str(ours[case_no]["status"])
            if hall_status == our or not hall_status:
                continue
            found += 1
            exists = await HallSyncConflict.filter(case_no=case_no, hall_status=hall_status, our_status=our,
                                                   resolved_at__isnull=True).exists()
            if exists:
                continue
            await _record_conflict(hall_event_id=None, case_no=case_no, status=hall_status, our_status=our,
                                   source="reconcile", error=DomainError("hall.conflict"), items=[])
    return found


# ---- operators and staff --------------------------------------------------------------------


async def lag_seconds() -> float:
    """Age of the oldest event the hall has not acknowledged yet (0 when nothing waits)."""
    oldest = await (OutboxEvent.filter(topic__in=list(ALL_TOPICS),
                                       status__in=[OutboxStatus.PENDING, OutboxStatus.RUNNING, OutboxStatus.DEAD])
                    .order_by("created_at").first().values_list("created_at", flat=True))
    if isinstance(oldest, datetime):
        return max(0.0, (clock.now() - oldest).total_seconds())
    return 0.0


async def status(*, settings: Settings, redis: Any) -> dict[str, Any]:
    base = OutboxEvent.filter(topic__in=list(ALL_TOPICS))
    cursor = await HallSyncCursor.get_or_none(name=CURSOR)
    state = await Breaker(redis, failures=settings.hall_breaker_failures,
                          pause_seconds=settings.hall_breaker_pause_seconds).state()
    return {
        "pending": await base.filter(status__in=[OutboxStatus.PENDING, OutboxStatus.RUNNING]).count(),
        "dead": await base.filter(status=OutboxStatus.DEAD).count(),
        "lag_seconds": await lag_seconds(),
        "last_cursor": cursor.cursor if cursor else None,
        "breaker": state,
        "open_conflicts": await HallSyncConflict.filter(resolved_at__isnull=True).count(),
    }


async def list_conflicts(*, staff: StaffPrincipal, hall_id: int | None, include_resolved: bool, limit: int,
                         offset: int) -> dict[str, Any]:
    roles = (StaffRole.CLERK, StaffRole.HALL_ADMIN, StaffRole.AUDITOR)
    if hall_id is not None:
        staff.require(hall_id, *roles)
        halls = {hall_id}
    else:
        halls = staff.halls_with(*roles)
    q = HallSyncConflict.filter(hall_id__in=sorted(halls))
    if not include_resolved:
        q = q.filter(resolved_at__isnull=True)
    total = await q.count()
    rows = await q.order_by("-id").offset(offset).limit(limit)
    return {"total": total, "conflicts": [{
        "id": r.id, "case_no": r.case_no, "hall_id": r.hall_id, "hall_event_id": r.hall_event_id,
        "source": r.source, "hall_status": r.hall_status, "our_status": r.our_status, "code": r.code,
        "details": r.details, "created_at": r.created_at.isoformat(),
        "resolved_at": r.resolved_at.isoformat() if r.resolved_at else None,
    } for r in rows]}

