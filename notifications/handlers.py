"""Outbox handlers: plan notifications for the other packages' events, deliver them one row at a time."""

from __future__ import annotations

from backend import runtime
from backend.jobs.outbox import Event, Registry, registry
from notifications import channels, service

# The events residents and staff hear about; the templates folder says what each one says.
# Each is listed, resident-visible or for staff, in its emitter's events.py (tests/test_event_catalogue.py).
TOPICS = (
    "appointment.booked", "appointment.cancelled", "appointment.reminder_due", "appointment.no_show",
    "ticket.called",
    "case.correction_needed", "case.awaiting_payment", "case.approved", "case.rejected",
    "case.certificate_issued", "case.delivered", "case.deadline_warning", "case.notice_approval_requested",
    "complaint.deadline_warning", "rectification.deadline_warning", "evaluation.received", "complaint.answered",
    "rectification.closed", "payment.refunded",
    "resident.channel_attached", "resident.channel_detached",
)

_state: tuple[runtime.Runtime, service.Policy, channels.Senders] | None = None


def current() -> tuple[service.Policy, channels.Senders]:
    """Policy and clients of this process's runtime, built once (again when tests start a new one)."""
    global _state
    rt = runtime.current()
    if _state is None or _state[0] is not rt:
        _state = (rt, service.Policy.from_settings(rt.settings), channels.build(rt.settings, rt.redis))
    return _state[1], _state[2]


def use(policy: service.Policy, senders: channels.Senders) -> None:
    """Tests and the bench: this runtime uses these instead of building its own."""
    global _state
    _state = (runtime.current(), policy, senders)


async def plan(event: Event) -> None:
    policy, _ = current()
    await service.plan(event, policy=policy)


async def deliver(event: Event) -> None:
    policy, senders = current()
    await service.deliver(event, policy=policy, senders=senders, redis=runtime.current().redis)


def register(reg: Registry) -> None:
    for topic in TOPICS:
        reg.on(topic)(plan)
    reg.on(service.DELIVER)(deliver)


register(registry)
