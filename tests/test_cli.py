"""The operator commands: migrate a fresh database, demo data once, outbox inspection and replay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backend import db
from backend.audit.models import AuditEntry
from backend.jobs import outbox
from backend.jobs.models import OutboxEvent
from backend.meta import Meta
from tests.conftest import ROOT


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env, capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def base_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "PALMHALL_ENV": "test", "PATH": "/usr/bin:/bin",
            "SECRETS_FILE": str(tmp_path / "secrets.json"), "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}


def test_migrate_creates_the_schema_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    env = base_env(f"sqlite://{tmp_path}/fresh/palmhall.sqlite3", tmp_path)
    first = cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied palmhall.0001_initial" in first.stdout
    again = cli("migrate", env=env)
    assert again.returncode == 0 and "applied" not in again.stdout
    import sqlite3

    tables = {r[0] for r in sqlite3.connect(tmp_path / "fresh/palmhall.sqlite3").execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"outbox_event", "audit_entry", "palmhall_meta"} <= tables


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """A model change without its migration would ship a schema the code does not expect."""
    env = base_env(f"sqlite://{tmp_path}/x.sqlite3", tmp_path)
    before = sorted((ROOT / "backend/db/migrations").glob("*.py"))
    r = cli("makemigrations", "--check", env=env)
    assert r.returncode == 0 and "No changes detected" in r.stdout, r.stdout + r.stderr
    assert sorted((ROOT / "backend/db/migrations").glob("*.py")) == before  # a check writes nothing


async def test_demo_load_runs_once(orm: str, tmp_path: Path) -> None:
    env = base_env(orm, tmp_path)
    first = cli("demo", "load", env=env)
    assert first.returncode == 0, first.stderr
    assert "demo data loaded" in first.stdout
    # Today's demo queue went through the queue functions: six tickets, the first two called (counters 1 and 3).
    from backend.booking.models import QueueTicket

    tickets = await QueueTicket.all().order_by("id").values_list("code", "status")
    assert tickets == [("A001", "called"), ("A002", "called"), ("B001", "waiting"), ("A003", "waiting"),
                       ("C001", "waiting"), ("B002", "waiting")]
    counts = (await AuditEntry.all().count(), await Meta.all().count())
    second = cli("demo", "load", env=env)
    assert second.returncode == 0
    assert "already present" in second.stdout
    assert (await AuditEntry.all().count(), await Meta.all().count()) == counts


async def test_outbox_list_and_replay_from_the_command_line(orm: str, tmp_path: Path) -> None:
    async with db.transaction() as tx:
        eid = await outbox.emit("hall.push", {"case": "X"}, using_db=tx)
    await OutboxEvent.filter(event_id=eid).update(status="dead", attempts=10,
                                                  last_error="HallError: 503 Service Unavailable\n...")
    env = base_env(orm, tmp_path)
    listed = cli("outbox", "list", "--status", "dead", env=env)
    assert listed.returncode == 0, listed.stderr
    assert str(eid) in listed.stdout and "hall.push" in listed.stdout
    assert "last error: HallError: 503 Service Unavailable" in listed.stdout
    replayed = cli("outbox", "replay", str(eid), env=env)
    assert replayed.returncode == 0 and "pending again" in replayed.stdout
    row = await OutboxEvent.get(event_id=eid)
    assert (row.status, row.attempts) == ("pending", 0)
    again = cli("outbox", "replay", str(eid), env=env)
    assert again.returncode == 1 and "outbox.not_dead" in again.stderr


