"""Outbox topics the identity package emits. Payloads carry ids and platform names, never personal data.

- `resident.channel_attached`: resident_id (the account joined), channel (wechat/alipay), from_resident, at.
  Subscribed by notifications: a required notice to the resident on their other channels.
- `resident.channel_detached`: resident_id, channel, at. Subscribed by notifications: a required notice.
"""

from __future__ import annotations

from backend.jobs.topics import Topic

CHANNEL_ATTACHED = "resident.channel_attached"
CHANNEL_DETACHED = "resident.channel_detached"

CATALOGUE = (
    Topic(CHANNEL_ATTACHED, ("resident_id", "channel", "from_resident", "at"), ("notifications",), "resident",
          "a second platform's login joined the account (after a texted code)"),
    Topic(CHANNEL_DETACHED, ("resident_id", "channel", "at"), ("notifications",), "resident",
          "a platform's login was removed from the account"),
)
