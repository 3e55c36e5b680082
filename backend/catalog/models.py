"""Halls (政务服务大厅 / 便民服务中心): the places residents are served and staff are scoped to."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Hall(Model):
    id = fields.IntField(primary_key=True)
    # Our own short code (used on the command line and in QR links), e.g. "HX-01".
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=100)
    # GB/T 2260 county code plus the GB/T 10114 township digits (6 or 9 digits).
    region_code = fields.CharField(max_length=9)
    address = fields.CharField(max_length=200, default="")
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hall"
