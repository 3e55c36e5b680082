"""Tables of the main hall sync: per-case push sequence, pushes, inbound hall events, conflicts, cursors."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class InboundOutcome(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"


class HallCaseLink(Model):
    """One case as the main hall knows it: its id there and the push sequence numbers."""

    id = fields.BigIntField(primary_key=True)
    case_no = fields.CharField(max_length=32, unique=True)
    hall_case_id = fields.CharField(max_length=64, null=True)
    last_seq_sent = fields.IntField(default=0)
    last_seq_acked = fields.IntField(default=0)
    hall_status = fields.CharField(max_length=24, null=True)
    acked_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "hall_case_link"


class HallPush(Model):
    """One outbox event pushed to the hall, numbered once so a retry repeats the same sequence number."""

    id = fields.BigIntField(primary_key=True)
    event_id = fields.UUIDField(unique=True)
    subject = fields.CharField(max_length=48, db_index=True)  # case:<no> or appointment:<id>
    seq = fields.IntField()
    kind = fields.CharField(max_length=32)
    committed_at = fields.DatetimeField()  # when the change the push reports was committed (the event's time)
    acked_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hall_push"
        unique_together = (("subject", "seq"),)


class HallInboundEvent(Model):
    """A status change the hall reported (callback or change feed), kept by the hall's event id."""

    id = fields.BigIntField(primary_key=True)
    hall_event_id = fields.CharField(max_length=64, unique=True)
    case_no = fields.CharField(max_length=32, db_index=True)
    status = fields.CharField(max_length=24)
    source = fields.CharField(max_length=16)  # callback or reconcile
    outcome = fields.CharEnumField(InboundOutcome, max_length=12)
    from_status = fields.CharField(max_length=24, null=True)
    to_status = fields.CharField(max_length=24, null=True)
    # Set when our own status_changed event for this move was seen, so it is not pushed back as news.
    echo_consumed = fields.BooleanField(default=False)
    echo_event_id = fields.UUIDField(null=True)
    received_at = fields.DatetimeField()

    class Meta:
        table = "hall_inbound_event"


class HallSyncConflict(Model):
    """A difference between the hall and us that the state machine would not settle: for staff to resolve."""

    id = fields.BigIntField(primary_key=True)
    case_no = fields.CharField(max_length=32, db_index=True)
    hall_id = fields.IntField(null=True)
    hall_event_id = fields.CharField(max_length=64, null=True)
    source = fields.CharField(max_length=16)  # callback or reconcile
    hall_status = fields.CharField(max_length=24)
    our_status = fields.CharField(max_length=24)
    code = fields.CharField(max_length=48)
    details: fields.Field = fields.JSONField(default=dict)
    created_at = fields.DatetimeField()
    resolved_at = fields.DatetimeField(null=True)

    class Meta:
        table = "hall_sync_conflict"


class HallSyncCursor(Model):
    """Where reconciliation stopped reading the hall's change feed."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=32, unique=True)
    cursor = fields.CharField(max_length=64, default="0")
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "hall_sync_cursor"
