"""Outbox topics the cases package emits. Payloads carry ids and case numbers, never personal data."""

from __future__ import annotations

from backend.catalog.calendar import YEAR_LOADED

CASE_SUBMITTED = "case.submitted"
CASE_CORRECTION_NEEDED = "case.correction_needed"
CASE_STATUS_CHANGED = "case.status_changed"
CASE_AWAITING_PAYMENT = "case.awaiting_payment"
CASE_APPROVED = "case.approved"
CASE_REJECTED = "case.rejected"
CASE_CERTIFICATE_ISSUED = "case.certificate_issued"
CASE_DEADLINE_WARNING = "case.deadline_warning"
EVALUATION_RECEIVED = "evaluation.received"
# Not in the case life itself, but warned the same way: answers owed to residents.
COMPLAINT_DEADLINE_WARNING = "complaint.deadline_warning"
RECTIFICATION_DEADLINE_WARNING = "rectification.deadline_warning"

# What the cases package listens to: the catalog loaded a year's official calendar.
CALENDAR_YEAR_LOADED = YEAR_LOADED


def ordering_key(case_no: str) -> str:
    """One case's events are handled in the order they happened."""
    return f"case:{case_no}"
