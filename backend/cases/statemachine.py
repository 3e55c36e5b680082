"""The case state machine: one table of allowed transitions and the one function that applies them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from backend import clock
from backend.audit import service as audit
from backend.cases import deadlines, events
from backend.cases.models import Case, CaseHistory
from backend.cases.models import CaseStatus as S
from backend.errors import DomainError, register_codes
from backend.jobs import outbox

register_codes({"case.illegal_transition": (409, "当前办件状态不允许此操作")})

RESIDENT, STAFF, SYSTEM, PAYMENT = "resident", "staff", "system", "payment"


@dataclass(frozen=True)
class Actor:
    """Who moves a case: kind is resident, staff, system or payment; id is theirs (no personal data)."""

    kind: str
    id: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.id}" if self.id else self.kind


Guard = Callable[[Case], bool]


@dataclass(frozen=True)
class Rule:
    step: str  # the step's name the resident reads (进度)
    actors: frozenset[str]
    guard: Guard | None = field(default=None)


def _rule(step: str, *actors: str, guard: Guard | None = None) -> Rule:
    return Rule(step, frozenset(actors), guard)


def _never_accepted(c: Case) -> bool:
    return c.accepted_at is None


def _resumes(state: S) -> Guard:
    return lambda c: c.resume_status == state


def _owes_fee(c: Case) -> bool:
    return c.has_fees and c.paid_at is None


def _no_fee_owed(c: Case) -> bool:
    return not _owes_fee(c)


def _yields_certificate(c: Case) -> bool:
    return c.certificate_type is not None


def _no_certificate(c: Case) -> bool:
    return c.certificate_type is None


# (from, to) -> rule. Anything not here is illegal. Withdrawal is the resident's, and only before acceptance.
TABLE: dict[tuple[S, S], Rule] = {
    (S.DRAFT, S.SUBMITTED): _rule("提交申请", RESIDENT, STAFF),
    (S.DRAFT, S.WITHDRAWN): _rule("申请人撤回", RESIDENT),
    (S.SUBMITTED, S.NEEDS_CORRECTION): _rule("一次性告知补正材料", SYSTEM, STAFF),
    (S.SUBMITTED, S.ACCEPTED): _rule("受理", STAFF),
    (S.SUBMITTED, S.REJECTED): _rule("不予受理", STAFF),
    (S.SUBMITTED, S.WITHDRAWN): _rule("申请人撤回", RESIDENT),
    (S.NEEDS_CORRECTION, S.SUBMITTED): _rule("补正材料已提交", RESIDENT, STAFF, guard=_never_accepted),
    (S.NEEDS_CORRECTION, S.ACCEPTED): _rule("补正材料已提交", RESIDENT, STAFF, guard=_resumes(S.ACCEPTED)),
    (S.NEEDS_CORRECTION, S.IN_REVIEW): _rule("补正材料已提交", RESIDENT, STAFF, guard=_resumes(S.IN_REVIEW)),
    (S.NEEDS_CORRECTION, S.WITHDRAWN): _rule("申请人撤回", RESIDENT, guard=_never_accepted),
    (S.NEEDS_CORRECTION, S.REJECTED): _rule("未按要求补正，不予办理", STAFF),
    (S.ACCEPTED, S.NEEDS_CORRECTION): _rule("一次性告知补正材料", STAFF),
    (S.ACCEPTED, S.IN_REVIEW): _rule("审查", STAFF, guard=_no_fee_owed),
    (S.ACCEPTED, S.AWAITING_PAYMENT): _rule("待缴费", STAFF, SYSTEM, guard=_owes_fee),
    (S.AWAITING_PAYMENT, S.IN_REVIEW): _rule("已缴费，审查", PAYMENT, SYSTEM),
    (S.AWAITING_PAYMENT, S.CLOSED): _rule("逾期未缴费，办件关闭", STAFF, SYSTEM),
    (S.IN_REVIEW, S.NEEDS_CORRECTION): _rule("一次性告知补正材料", STAFF),
    (S.IN_REVIEW, S.APPROVED): _rule("审批通过", STAFF),
    (S.IN_REVIEW, S.REJECTED): _rule("审批不予许可", STAFF),
    (S.APPROVED, S.CERTIFICATE_ISSUED): _rule("电子证照已签发", STAFF, SYSTEM, guard=_yields_certificate),
    (S.APPROVED, S.DELIVERED): _rule("办理结果已送达", STAFF, guard=_no_certificate),
    (S.CERTIFICATE_ISSUED, S.DELIVERED): _rule("办理结果已送达", STAFF),
    (S.CERTIFICATE_ISSUED, S.CLOSED): _rule("办结归档", STAFF, SYSTEM),
    (S.DELIVERED, S.CLOSED): _rule("办结归档", STAFF, SYSTEM),
    (S.REJECTED, S.CLOSED): _rule("办结归档", STAFF, SYSTEM),
}

# States after which the resident may rate the service (办结).
COMPLETED = frozenset({S.APPROVED, S.REJECTED, S.CERTIFICATE_ISSUED, S.DELIVERED, S.CLOSED})

_TOPIC_ON_ENTRY = {
    S.NEEDS_CORRECTION: events.CASE_CORRECTION_NEEDED,
    S.AWAITING_PAYMENT: events.CASE_AWAITING_PAYMENT,
    S.APPROVED: events.CASE_APPROVED,
    S.REJECTED: events.CASE_REJECTED,
    S.CERTIFICATE_ISSUED: events.CASE_CERTIFICATE_ISSUED,
    S.DELIVERED: events.CASE_DELIVERED,
}


@dataclass(frozen=True)
class Moved:
    """What a transition wrote: its history row, and the event announcing the state entered (if it has one)."""

    history: CaseHistory
    entry_event_id: uuid.UUID | None


def allowed(case: Case, to: S, actor: Actor) -> Rule | None:
    """The rule that lets `actor` move `case` to `to`, or None."""
    rule = TABLE.get((case.status, to))
    if rule is None or actor.kind not in rule.actors or (rule.guard is not None and not rule.guard(case)):
        return None
    return rule


def _illegal(case: Case, to: S) -> DomainError:
    return DomainError("case.illegal_transition", details={"from": case.status.value, "to": to.value})


async def transition(
    case: Case,
    to: S,
    *,
    actor: Actor,
    using_db: BaseDBAsyncClient,
    reason: str = "",
    changes: dict[str, Any] | None = None,
    event_extra: dict[str, Any] | None = None,
) -> Moved:
    """Move `case` to `to` in the caller's transaction, or raise case.illegal_transition and change nothing.

    Writes the row (guarded by the state it was read in, so two clerks cannot both move it),
    a history row, an audit row and the outbox events. `changes` are further columns set with
    the move (e.g. decided_at).
    """
    before = case.status
    rule = allowed(case, to, actor)
    if rule is None:
        raise _illegal(case, to)
    now = clock.now()
    on = deadlines.local_day(now)
    case.status = to
    for name, value in (changes or {}).items():
        setattr(case, name, value)
    if to == S.SUBMITTED and case.submitted_at is None:
        case.submitted_at = now
    if to == S.ACCEPTED and case.accepted_at is None:
        case.accepted_at = now
    if to in (S.APPROVED, S.REJECTED):
        case.decided_at = now
    if to in (S.CLOSED, S.WITHDRAWN):
        case.completed_at = now
    await deadlines.apply(case, before, to, on)
    if to in deadlines.RUNNING:
        # A resumed clock may already be past a threshold. Elsewhere the level stays as it was, for the record.
        case.warning_level = deadlines.level_on(case, on)
    columns = {
        "status": to, "submitted_at": case.submitted_at, "accepted_at": case.accepted_at,
        "decided_at": case.decided_at, "completed_at": case.completed_at, "accepted_on": case.accepted_on,
        "paused_since": case.paused_since, "pauses": case.pauses, "yellow_on": case.yellow_on,
        "promised_due": case.promised_due, "statutory_due": case.statutory_due,
        "due_provisional": case.due_provisional, "warning_level": case.warning_level, "updated_at": now,
        **(changes or {}),
    }
    moved = await Case.filter(id=case.id, status=before).using_db(using_db).update(**columns)
    if not moved:
        # Someone moved it first: what this caller saw is no longer true.
        case.status = before
        raise _illegal(case, to)
    history = await CaseHistory.create(
        case_id=case.id, from_status=before, to_status=to, step=rule.step, actor_kind=actor.kind,
        actor_id=actor.id, reason=reason, created_at=now, using_db=using_db,
    )
    await audit.record(
        using_db=using_db, actor_kind=actor.kind, actor_id=actor.id, action="case.transition",
        target_kind="case", target_id=case.case_no,
        details={"from": before.value, "to": to.value, "step": rule.step, "reason": reason},
    )
    payload = {"case_id": case.id, "case_no": case.case_no, "hall_id": case.hall_id,  # type: ignore[attr-defined]
               "from": before.value, "to": to.value, "actor_kind": actor.kind}
    key = events.ordering_key(case.case_no)
    if before == S.DRAFT and to == S.SUBMITTED:
        await outbox.emit(events.CASE_SUBMITTED, {k: payload[k] for k in ("case_id", "case_no", "hall_id")},
                          using_db=using_db, ordering_key=key)
    await outbox.emit(events.CASE_STATUS_CHANGED, payload, using_db=using_db, ordering_key=key)
    topic = _TOPIC_ON_ENTRY.get(to)
    entry_event = None
    if topic is not None:
        extra = dict(event_extra or {})
        if to == S.DELIVERED:
            # Posted or picked up, whoever recorded it (a clerk, or the main hall's callback): the notice differs.
            extra.setdefault("method", case.delivery_method.value)
        entry_event = await outbox.emit(topic, {"case_id": case.id, "case_no": case.case_no, **extra},
                                        using_db=using_db, ordering_key=key)
    return Moved(history=history, entry_event_id=entry_event)
