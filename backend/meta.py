"""Small key/value facts about this installation (e.g. that demo data was loaded)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Meta(Model):
    key = fields.CharField(max_length=100, primary_key=True)
    value: fields.Field = fields.JSONField()
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "palmhall_meta"
