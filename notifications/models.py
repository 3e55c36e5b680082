"""Notification tables: one delivery row per (event, recipient, channel), consent, residents' choices."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class NotifyChannel(StrEnum):
    WECHAT = "wechat"  # subscribeMessage.send
    ALIPAY = "alipay"  # mini program template message
    SMS = "sms"
    INBOX = "inbox"  # the resident's in-app inbox, always written
    STAFF_INBOX = "staff_inbox"  # a hall's staff inbox (deadline warnings, complaint alerts)


class NotifyStatus(StrEnum):
    CREATED = "created"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"  # only where the channel reports delivery
    TEMPORARY_FAILURE = "temporary_failure"  # will be retried
    PERMANENT_FAILURE = "permanent_failure"  # terminal: not retried
    CANCELLED = "cancelled"  # terminal: never sent (no consent, switched off, daily cap)


TERMINAL = frozenset({NotifyStatus.SENT, NotifyStatus.DELIVERED, NotifyStatus.PERMANENT_FAILURE,
                      NotifyStatus.CANCELLED})


class SubscriptionKind(StrEnum):
    ONE_TIME = "one_time"  # each acceptance allows exactly one message
    LONG_TERM = "long_term"  # kept until revoked


class Notification(Model):
    """One message to one recipient on one channel, and everything that happened to it."""

    id = fields.BigIntField(primary_key=True)
    event_id = fields.UUIDField()
    topic = fields.CharField(max_length=100)
    # resident:<id> or hall:<id>; with event_id and channel, what makes a message unique.
    recipient = fields.CharField(max_length=40)
    resident_id = fields.BigIntField(null=True, db_index=True)
    hall_id = fields.IntField(null=True, db_index=True)
    channel = fields.CharEnumField(NotifyChannel, max_length=12)
    template = fields.CharField(max_length=64)  # the template file's key (usually the topic)
    required = fields.BooleanField(default=False)  # a notice the law requires
    status = fields.CharEnumField(NotifyStatus, max_length=20, default=NotifyStatus.CREATED)
    # The rendered message: title, body, page and the channel's request body.
    content: fields.Field = fields.JSONField(default=dict)
    attempts = fields.IntField(default=0)
    # True once a one-time subscription was used up for this row, so retries do not use another.
    consent_taken = fields.BooleanField(default=False)
    provider_answer: fields.Field = fields.JSONField(null=True)
    provider_id = fields.CharField(max_length=100, null=True)  # msgid, BizId, ...
    reason = fields.CharField(max_length=64, null=True)  # why cancelled or failed, in one word
    event_at_ms = fields.BigIntField()  # when the event was committed (epoch ms), for lag
    hold_until_ms = fields.BigIntField(null=True)  # quiet hours: not sent before this
    sent_at_ms = fields.BigIntField(null=True)
    read_at = fields.DatetimeField(null=True)  # inboxes
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "notification"
        unique_together = (("event_id", "recipient", "channel"),)
        indexes = (("status", "updated_at"), ("resident_id", "channel", "created_at"), ("channel", "provider_id"))


class Subscription(Model):
    """A resident's consent to one provider template (what wx.requestSubscribeMessage returned)."""

    id = fields.BigIntField(primary_key=True)
    resident_id = fields.BigIntField(db_index=True)
    channel = fields.CharEnumField(NotifyChannel, max_length=12)
    template_id = fields.CharField(max_length=128)
    kind = fields.CharEnumField(SubscriptionKind, max_length=10)
    # One-time: acceptances not used yet. Long-term: ignored.
    remaining = fields.IntField(default=0)
    # accept, reject, ban: the last answer; reject and ban end a long-term subscription.
    last_answer = fields.CharField(max_length=10)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "notify_subscription"
        unique_together = (("resident_id", "channel", "template_id"),)


class Preference(Model):
    """A category a resident switched off or on (absent means on)."""

    id = fields.BigIntField(primary_key=True)
    resident_id = fields.BigIntField(db_index=True)
    category = fields.CharField(max_length=32)
    enabled = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "notify_preference"
        unique_together = (("resident_id", "category"),)
