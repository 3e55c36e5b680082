"""Outbox topics the main hall sync emits for itself."""

from __future__ import annotations

from backend.hall_sync.service import RESYNC_TOPIC
from backend.jobs.topics import Topic

CATALOGUE = (
    Topic(RESYNC_TOPIC, ("case_no", "case_id"), ("hall_sync",),
          about="an operator asked for a case to be sent to the main hall again"),
)
