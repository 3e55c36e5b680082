"""Outbox topics the booking package emits (its service names them where it emits them).

Every appointment event carries the same ids and times (`APPOINTMENT`): the appointment, its resident,
hall, item code and slot, never personal data. Ordering key `appointment:{id}`.
"""

from __future__ import annotations

from backend.jobs.topics import Topic

APPOINTMENT = ("appointment_id", "resident_id", "hall_id", "item_code", "starts_at", "ends_at")

CATALOGUE = (
    Topic("appointment.booked", APPOINTMENT, ("hall_sync", "notifications"), "resident", "a seat was booked"),
    Topic("appointment.cancelled", (*APPOINTMENT, "by", "reason"), ("hall_sync", "notifications"), "resident",
          "cancelled by the resident (by: resident) or by the hall (by: hall, with the reason: a closure); "
          "the hall's cancellation is a required notice with a link to book again"),
    Topic("appointment.reminder_due", APPOINTMENT, ("notifications",), "resident",
          "the day before (Asia/Shanghai), once per appointment"),
    Topic("appointment.no_show", (*APPOINTMENT, "no_shows", "limit", "window_days", "bar_id"), ("notifications",),
          "resident", "not checked in by the slot's end plus grace; bar_id when this one barred the ID number "
                      "from booking (the bar's end is read from booking)"),
    Topic("appointment.checked_in", ("appointment_id", "hall_id", "ticket", "resident_id"), ("hall_sync",),
          about="the visitor checked in and holds a queue ticket: they are at the hall, nobody is told"),
    Topic("ticket.called", ("ticket_id", "code", "hall_id", "counter", "appointment_id"), ("notifications",),
          "resident", "a ticket was called to a counter; the resident is told when it came from an appointment"),
)
