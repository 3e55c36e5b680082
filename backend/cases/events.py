"""Outbox topics the cases package emits. Payloads carry ids and case numbers, never personal data."""

from __future__ import annotations

from backend.catalog.calendar import YEAR_LOADED
from backend.identity.events import REAL_NAME_BOUND
from backend.jobs.topics import Topic

CASE_SUBMITTED = "case.submitted"
CASE_CORRECTION_NEEDED = "case.correction_needed"
CASE_STATUS_CHANGED = "case.status_changed"
CASE_AWAITING_PAYMENT = "case.awaiting_payment"
CASE_APPROVED = "case.approved"
CASE_REJECTED = "case.rejected"
CASE_CERTIFICATE_ISSUED = "case.certificate_issued"
CASE_DELIVERED = "case.delivered"
CASE_DEADLINE_WARNING = "case.deadline_warning"
# A clerk asks a hall admin to approve a further correction notice (payload: request_id, case_id, case_no, hall_id).
# Subscribed by notifications: the hall's staff inbox.
CASE_NOTICE_APPROVAL_REQUESTED = "case.notice_approval_requested"
EVALUATION_RECEIVED = "evaluation.received"
# Not in the case life itself, but warned the same way: answers owed to residents.
COMPLAINT_DEADLINE_WARNING = "complaint.deadline_warning"
RECTIFICATION_DEADLINE_WARNING = "rectification.deadline_warning"
# The answers themselves, which the resident who asked or rated is owed.
COMPLAINT_ANSWERED = "complaint.answered"
RECTIFICATION_CLOSED = "rectification.closed"

# What the cases package listens to: the catalog loaded a year's official calendar; a resident bound their real
# name (walk-in cases with that ID number become theirs).
CALENDAR_YEAR_LOADED = YEAR_LOADED
RESIDENT_REAL_NAME_BOUND = REAL_NAME_BOUND

_CASE = ("case_id", "case_no")

CATALOGUE = (
    Topic(CASE_SUBMITTED, ("case_id", "case_no", "hall_id"), ("hall_sync",),
          about="a case left its draft: the main hall receives it"),
    Topic(CASE_STATUS_CHANGED, ("case_id", "case_no", "hall_id", "from", "to", "actor_kind"), ("hall_sync",),
          about="every move of the state machine, for the main hall's record"),
    Topic(CASE_CORRECTION_NEEDED, (*_CASE, "round", "codes", "amended", "amends_event"),
          ("hall_sync", "notifications"), "resident",
          "the one-time correction notice (一次性告知), or the same round's notice completed (amends_event: the "
          "message it brings up to date instead of sending another)"),
    Topic(CASE_AWAITING_PAYMENT, (*_CASE, "amount_fen"), ("notifications",), "resident",
          "the case waits for its fee"),
    Topic(CASE_APPROVED, _CASE, ("notifications",), "resident", "approved (审批通过)"),
    Topic(CASE_REJECTED, _CASE, ("notifications",), "resident", "not approved (不予许可)"),
    Topic(CASE_CERTIFICATE_ISSUED, (*_CASE, "certificate_id"), ("notifications",), "resident",
          "the e-certificate is issued"),
    Topic(CASE_DELIVERED, (*_CASE, "method"), ("notifications",), "resident",
          "the result was posted (method post: the tracking number is read from the case) or picked up"),
    Topic(CASE_DEADLINE_WARNING, (*_CASE, "hall_id", "level", "promised_due"), ("notifications",), "staff",
          "yellow at 80% of the promised limit, red past it"),
    Topic(EVALUATION_RECEIVED, ("evaluation_id", *_CASE, "hall_id", "level", "rectification_id"),
          ("notifications",), "staff", "a rating; a bad one opened a rectification"),
    Topic(COMPLAINT_DEADLINE_WARNING, ("id", "hall_id", "level", "due_on"), ("notifications",), "staff",
          "an answer owed to a complaint or question is due soon, or late"),
    Topic(RECTIFICATION_DEADLINE_WARNING, ("id", "hall_id", "level", "due_on"), ("notifications",), "staff",
          "a bad rating's rectification is due soon, or late"),
    Topic(COMPLAINT_ANSWERED, ("complaint_id", "hall_id", "kind"), ("notifications",), "resident",
          "the hall answered a resident's complaint or question (the answer is read from the complaint)"),
    Topic(RECTIFICATION_CLOSED, ("rectification_id", "evaluation_id", *_CASE, "hall_id"), ("notifications",),
          "resident", "the hall closed a bad rating's rectification with its written response"),
    Topic(CASE_NOTICE_APPROVAL_REQUESTED, ("request_id", "case_id", "case_no", "hall_id"), ("notifications",),
          "staff", "a clerk asks the hall admin to approve a further correction notice after an answered one"),
)


def ordering_key(case_no: str) -> str:
    """One case's events are handled in the order they happened."""
    return f"case:{case_no}"
