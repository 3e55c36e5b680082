"""Outbox topics the identity package emits. Payloads carry ids and platform names, never personal data.

- `resident.channel_attached`: resident_id (the account joined), channel (wechat/alipay), from_resident, at.
  Subscribed by notifications: a required notice to the resident on their other channels.
- `resident.channel_detached`: resident_id, channel, at. Subscribed by notifications: a required notice.
"""

from __future__ import annotations

CHANNEL_ATTACHED = "resident.channel_attached"
CHANNEL_DETACHED = "resident.channel_detached"
