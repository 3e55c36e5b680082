"""Outbox topics the identity package emits. Payloads carry ids and platform names, never personal data.

- `resident.channel_attached`: resident_id (the account joined), channel (wechat/alipay), from_resident, at.
  Subscribed by notifications: a required notice to the resident on their other channels.
- `resident.channel_detached`: resident_id, channel, at. Subscribed by notifications: a required notice.
- `resident.real_name_bound`: resident_id, at. Not shown to the resident (the binding answers them at once).
  Subscribed by cases: walk-in cases opened at a counter with this ID number, and their e-certificates,
  become the resident's.
"""

from __future__ import annotations

from backend.jobs.topics import Topic

CHANNEL_ATTACHED = "resident.channel_attached"
CHANNEL_DETACHED = "resident.channel_detached"
REAL_NAME_BOUND = "resident.real_name_bound"

CATALOGUE = (
    Topic(CHANNEL_ATTACHED, ("resident_id", "channel", "from_resident", "at"), ("notifications",), "resident",
          "a second platform's login joined the account (after a texted code)"),
    Topic(CHANNEL_DETACHED, ("resident_id", "channel", "at"), ("notifications",), "resident",
          "a platform's login was removed from the account"),
    Topic(REAL_NAME_BOUND, ("resident_id", "at"), ("cases",), "internal",
          "a resident bound their real name: walk-in cases and certificates with that ID number become theirs"),
)
