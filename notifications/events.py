"""Outbox topics the notifications package emits for itself."""

from __future__ import annotations

from backend.jobs.topics import Topic
from notifications.service import DELIVER

CATALOGUE = (
    Topic(DELIVER, ("notification_id",), ("notifications",),
          about="send one planned message on its channel (retried with backoff, then the next channel)"),
)
