"""The transactional outbox table."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its time (first run or a retry)
    RUNNING = "running"  # claimed by a worker; its lease says until when
    DONE = "done"  # every handler succeeded
    DEAD = "dead"  # failed max_attempts times; an operator may replay it


class OutboxEvent(Model):
    # Write order; events sharing an ordering_key run strictly in this order.
    seq = fields.BigIntField(primary_key=True)
    # The event id is the idempotency key handlers use; stable across retries and replays.
    event_id = fields.UUIDField(unique=True)
    topic = fields.CharField(max_length=100)
    payload: fields.Field = fields.JSONField()
    # Events with the same key are run in the order they were written (e.g. one case's steps).
    ordering_key = fields.CharField(max_length=100, null=True)
    status = fields.CharEnumField(OutboxStatus, max_length=10, default=OutboxStatus.PENDING)
    attempts = fields.IntField(default=0)
    max_attempts = fields.IntField(default=10)
    # Times as epoch milliseconds: compared in SQL identically on SQLite and PostgreSQL.
    available_at = fields.BigIntField()
    lease_until = fields.BigIntField(null=True)
    locked_by = fields.CharField(max_length=100, null=True)
    done_handlers: fields.Field = fields.JSONField(default=list)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_event"
        indexes = (("status", "available_at"), ("ordering_key", "seq"))
