"""The append-only, hash-chained audit log table."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class AuditEntry(Model):
    id = fields.BigIntField(primary_key=True)
    # Contiguous from 1; unique, so two writers can never fork the chain.
    seq = fields.BigIntField(unique=True)
    actor_kind = fields.CharField(max_length=20)  # resident, staff, kiosk, system, platform
    actor_id = fields.CharField(max_length=64, null=True)
    action = fields.CharField(max_length=80)
    target_kind = fields.CharField(max_length=40, null=True)
    target_id = fields.CharField(max_length=64, null=True)
    details: fields.Field = fields.JSONField(default=dict)
    request_id = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField()
    prev_hash = fields.CharField(max_length=64)
    hash = fields.CharField(max_length=64)

    class Meta:
        table = "audit_entry"
        indexes = (("target_kind", "target_id"), ("actor_kind", "actor_id"))
