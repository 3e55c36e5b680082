"""Halls, counters, opening hours, the calendar and service items (事项) with versioned guides."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class SubjectType(StrEnum):
    PERSON = "person"  # 自然人
    LEGAL_ENTITY = "legal_entity"  # 法人


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


class Counter(Model):
    """A service window (窗口) in a hall and the items it serves."""

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="counters", on_delete=fields.CASCADE
    )
    number = fields.IntField()  # what the display board calls: "3号窗口"
    name = fields.CharField(max_length=64)
    # Queue groups (letters) this counter calls from, e.g. ["A", "B"].
    groups: fields.Field = fields.JSONField(default=list)
    active = fields.BooleanField(default=True)

    class Meta:
        table = "counter"
        unique_together = (("hall", "number"),)


class OpeningHours(Model):
    """Hours a hall serves on a weekday (0 = Monday), in Asia/Shanghai local time."""

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="opening_hours", on_delete=fields.CASCADE
    )
    weekday = fields.SmallIntField()
    opens = fields.TimeField()
    closes = fields.TimeField()

    class Meta:
        table = "opening_hours"


class HallClosure(Model):
    """A hall's own closed day or part of a day, set by its admin (does not stop statutory clocks)."""

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="closures", on_delete=fields.CASCADE
    )
    day = fields.DateField()
    reason = fields.CharField(max_length=200)
    # The closed parts of the day, [["14:00", "17:00"], ...] (Asia/Shanghai); null: the whole day.
    periods: fields.Field = fields.JSONField(null=True)
    created_by = fields.IntField(null=True)

    class Meta:
        table = "hall_closure"
        unique_together = (("hall", "day"),)


class HallSpecialHours(Model):
    """A hall's own hours for one date, in place of its weekly hours that day (shorter, or none at all)."""

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="special_hours", on_delete=fields.CASCADE
    )
    day = fields.DateField()
    # [["09:00", "12:00"], ...] (Asia/Shanghai); an empty list closes the day.
    periods: fields.Field = fields.JSONField(default=list)
    reason = fields.CharField(max_length=200)
    created_by = fields.IntField(null=True)

    class Meta:
        table = "hall_special_hours"
        unique_together = (("hall", "day"),)


class CalendarYear(Model):
    """A year's official arrangement loaded by an operator (`palmhall calendar load`): it takes
    precedence over the chinese-calendar library, which lags the State Council's notice."""

    year = fields.IntField(primary_key=True)
    source = fields.CharField(max_length=200)  # e.g. 国办发明电〔2026〕7号
    loaded_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "calendar_year"


class CalendarDay(Model):
    """An exception to "Monday–Friday work": an official holiday, or a weekend make-up workday (调休)."""

    day = fields.DateField(primary_key=True)
    is_workday = fields.BooleanField()
    name = fields.CharField(max_length=64, default="")

    class Meta:
        table = "calendar_day"


class ServiceItem(Model):
    """One item of the catalog: one implementation code (实施编码), one standard."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=40, unique=True)
    # Denormalized from the current version for search.
    name = fields.CharField(max_length=200, db_index=True)
    department = fields.CharField(max_length=100, db_index=True)
    subject_type = fields.CharEnumField(SubjectType, max_length=12)
    keywords = fields.CharField(max_length=500, default="")
    # Queue group letter used for tickets of this item (A012).
    queue_group = fields.CharField(max_length=1, default="A")
    current_version = fields.IntField(default=1)
    active = fields.BooleanField(default=True)
    halls: fields.ManyToManyRelation[Hall] = fields.ManyToManyField(
        "palmhall.Hall", related_name="items", through="service_item_hall"
    )
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "service_item"


class ServiceItemVersion(Model):
    """The full guide (办事指南) as of one version. Cases keep the version they started with."""

    id = fields.IntField(primary_key=True)
    item: fields.ForeignKeyRelation[ServiceItem] = fields.ForeignKeyField(
        "palmhall.ServiceItem", related_name="versions", on_delete=fields.CASCADE
    )
    version = fields.IntField()
    effective_from = fields.DateField()
    name = fields.CharField(max_length=200)
    department = fields.CharField(max_length=100)
    subject_type = fields.CharEnumField(SubjectType, max_length=12)
    legal_basis = fields.TextField(default="")
    conditions = fields.TextField(default="")
    # [{code, name, form: original|copy|electronic, copies, required, certificate_type|null}]
    materials: fields.Field = fields.JSONField(default=list)
    statutory_days = fields.IntField()  # 法定时限, working days
    promised_days = fields.IntField()  # 承诺时限, working days
    # [{name, basis, amount_fen}]
    fees: fields.Field = fields.JSONField(default=list)
    # mini_program, kiosk, counter
    channels: fields.Field = fields.JSONField(default=list)
    online_depth = fields.SmallIntField(default=1)  # 1 information … 4 fully online (全程网办)
    # e-certificate type issued on approval, if any (e.g. "居住证明")
    certificate_type = fields.CharField(max_length=64, null=True)
    # SHA-256 of the canonical guide: an import that changes nothing makes no version.
    content_hash = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "service_item_version"
        unique_together = (("item", "version"),)
