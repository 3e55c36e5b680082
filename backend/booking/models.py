"""Booking rules, slots, appointments, no-show bars and queue tickets."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"
    CHECKED_IN = "checked_in"
    NO_SHOW = "no_show"
    COMPLETED = "completed"


class TicketStatus(StrEnum):
    WAITING = "waiting"
    CALLED = "called"
    SERVING = "serving"
    DONE = "done"
    MISSED = "missed"


class BookingRule(Model):
    """How a hall books an item (item null: the hall's default for every item)."""

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Model] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="booking_rules", on_delete=fields.CASCADE
    )
    item: fields.ForeignKeyNullableRelation[Model] = fields.ForeignKeyField(
        "palmhall.ServiceItem", related_name="booking_rules", null=True, on_delete=fields.CASCADE
    )
    slot_minutes = fields.IntField(default=30)
    seats_per_slot = fields.IntField(default=4)
    horizon_days = fields.IntField(default=14)
    min_notice_minutes = fields.IntField(default=60)
    cancel_cutoff_minutes = fields.IntField(default=120)
    max_active_per_person = fields.IntField(default=3)
    # A cancelled seat is offered again only after this, so seats cannot be handed over.
    release_cooldown_minutes = fields.IntField(default=30)
    checkin_early_minutes = fields.IntField(default=30)
    checkin_late_minutes = fields.IntField(default=15)
    walkin_daily_quota = fields.IntField(default=100)

    class Meta:
        table = "booking_rule"
        unique_together = (("hall", "item"),)


class Slot(Model):
    """One bookable time of one item in one hall. `booked` can never pass `capacity`."""

    id = fields.BigIntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Model] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="slots", on_delete=fields.CASCADE
    )
    item: fields.ForeignKeyRelation[Model] = fields.ForeignKeyField(
        "palmhall.ServiceItem", related_name="slots", on_delete=fields.CASCADE
    )
    day = fields.DateField()
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    capacity = fields.IntField()
    # Seats held: active appointments plus cancelled ones still cooling down.
    booked = fields.IntField(default=0)

    class Meta:
        table = "slot"
        unique_together = (("hall", "item", "starts_at"),)


class Appointment(Model):
    id = fields.BigIntField(primary_key=True)
    resident_id = fields.BigIntField(db_index=True)
    # The keyed hash of the ID number: limits follow the person across logins and platforms.
    person_hash = fields.CharField(max_length=64, db_index=True)
    hall: fields.ForeignKeyRelation[Model] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="appointments", on_delete=fields.RESTRICT
    )
    item: fields.ForeignKeyRelation[Model] = fields.ForeignKeyField(
        "palmhall.ServiceItem", related_name="appointments", on_delete=fields.RESTRICT
    )
    slot: fields.ForeignKeyRelation[Slot] = fields.ForeignKeyField(
        "palmhall.Slot", related_name="appointments", on_delete=fields.RESTRICT
    )
    day = fields.DateField()
    status = fields.CharEnumField(AppointmentStatus, max_length=12, default=AppointmentStatus.BOOKED)
    idempotency_key = fields.CharField(max_length=100)
    request_hash = fields.CharField(max_length=64)
    cancelled_at = fields.DatetimeField(null=True)
    # Who cancelled ("resident", or "hall" when a closure or new hours left the slot outside opening hours) and why.
    cancelled_by = fields.CharField(max_length=8, null=True)
    cancel_reason = fields.CharField(max_length=200, null=True)
    seat_released = fields.BooleanField(default=False)
    checked_in_at = fields.DatetimeField(null=True)
    no_show_at = fields.DatetimeField(null=True)
    reminded = fields.BooleanField(default=False)
    # The appointment this one replaced (a reschedule): unique, so an appointment is moved at most once.
    rescheduled_from: fields.OneToOneNullableRelation[Appointment] = fields.OneToOneField(
        "palmhall.Appointment", related_name="rescheduled_to", null=True, on_delete=fields.RESTRICT
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "appointment"
        unique_together = (("resident_id", "idempotency_key"),)


class BookingBar(Model):
    """Booking barred for an ID number after repeated no-shows."""

    id = fields.IntField(primary_key=True)
    person_hash = fields.CharField(max_length=64, db_index=True)
    reason = fields.CharField(max_length=200)
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()

    class Meta:
        table = "booking_bar"


class QueueTicket(Model):
    id = fields.BigIntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Model] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="tickets", on_delete=fields.CASCADE
    )
    day = fields.DateField()
    group = fields.CharField(max_length=1)
    number = fields.IntField()
    code = fields.CharField(max_length=8)  # A012
    item: fields.ForeignKeyNullableRelation[Model] = fields.ForeignKeyField(
        "palmhall.ServiceItem", related_name="tickets", null=True, on_delete=fields.SET_NULL
    )
    appointment: fields.ForeignKeyNullableRelation[Appointment] = fields.ForeignKeyField(
        "palmhall.Appointment", related_name="tickets", null=True, on_delete=fields.SET_NULL
    )
    # 0: checked-in appointment, 1: walk-in. Lower is called first within a group.
    priority = fields.SmallIntField(default=1)
    status = fields.CharEnumField(TicketStatus, max_length=8, default=TicketStatus.WAITING)
    call_count = fields.SmallIntField(default=0)
    counter: fields.ForeignKeyNullableRelation[Model] = fields.ForeignKeyField(
        "palmhall.Counter", related_name="tickets", null=True, on_delete=fields.SET_NULL
    )
    issued_by = fields.CharField(max_length=40)  # kiosk device id or staff:<id>
    created_at = fields.DatetimeField(auto_now_add=True)
    called_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "queue_ticket"
        unique_together = (("hall", "day", "group", "number"),)
