"""`palmhall notifications stats` and `retry` against a real database, as an operator runs them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from backend.jobs.models import OutboxEvent
from notifications.models import Notification, NotifyChannel, NotifyStatus
from tests.test_cli import base_env, cli


async def _row(channel: NotifyChannel, status: NotifyStatus, *, lag_ms: int | None = None, **extra: object
               ) -> Notification:
    event_at = 1_772_000_000_000
    return await Notification.create(
        event_id=uuid.uuid4(), topic="case.approved", recipient="resident:1", resident_id=1, channel=channel,
        template="case.approved", required=True, status=status, event_at_ms=event_at,
        sent_at_ms=event_at + lag_ms if lag_ms is not None else None,
        content={"chain": ["wechat", "sms"], "urgent": False, "messages": {}}, **extra)


async def test_stats_and_retry_from_the_command_line(orm: str, tmp_path: Path) -> None:
    for lag in (1000, 2000, 3000, 4000, 100_000):
        await _row(NotifyChannel.WECHAT, NotifyStatus.SENT, lag_ms=lag)
    failed = await _row(NotifyChannel.WECHAT, NotifyStatus.PERMANENT_FAILURE, reason="retries_exhausted",
                        provider_answer={"errcode": -1, "errmsg": "system error"}, attempts=6)
    await _row(NotifyChannel.SMS, NotifyStatus.CANCELLED, reason="no_address")
    env = base_env(orm, tmp_path)

    r = cli("notifications", "stats", "--since", "7d", "--json", env=env)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert {"channel": "wechat", "template": "case.approved", "status": "sent", "n": 5} in stats["counts"]
    assert {"channel": "wechat", "template": "case.approved", "status": "permanent_failure", "n": 1} in stats["counts"]
    assert stats["lag"]["wechat"]["sent"] == 5
    assert stats["lag"]["wechat"]["p50_seconds"] == 3.0
    assert 90 < stats["lag"]["wechat"]["p99_seconds"] <= 100
    table = cli("notifications", "stats", "--since", "7d", env=env)
    assert "permanent_failure" in table.stdout and "p99" in table.stdout

    r = cli("notifications", "retry", "--failed-since", "1h", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"1 message(s) queued again: {failed.id}"
    await failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.reason) == (NotifyStatus.CREATED, 0, None)
    queued = await OutboxEvent.filter(topic="notification.deliver").values_list("payload", flat=True)
    assert [json.loads(p) if isinstance(p, str) else p for p in queued] == [{"notification_id": failed.id}]
    bad = cli("notifications", "stats", "--since", "yesterday-ish", env=env)
    assert bad.returncode == 2 and "24h" in bad.stderr


async def test_stats_count_delivered_messages(orm: str, tmp_path: Path) -> None:
    for status in (NotifyStatus.DELIVERED, NotifyStatus.DELIVERED, NotifyStatus.SENT):
        await _row(NotifyChannel.WECHAT, status, lag_ms=1000)
    r = cli("notifications", "stats", "--since", "7d", "--json", env=base_env(orm, tmp_path))
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert {"channel": "wechat", "template": "case.approved", "status": "delivered", "n": 2} in stats["counts"]
    assert (stats["lag"]["wechat"]["sent"], stats["lag"]["wechat"]["delivered"]) == (3, 2)
    table = cli("notifications", "stats", "--since", "7d", env=base_env(orm, tmp_path)).stdout
    assert "wechat: 3 sent (2 delivered)" in table
