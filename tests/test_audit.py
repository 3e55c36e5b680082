"""The audit chain: written with the change, and verify names the first row tampered with."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from backend import db
from backend.audit import service as audit
from backend.audit.models import AuditEntry
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("orm")


async def write_rows(n: int) -> list[AuditEntry]:
    rows = []
    for i in range(n):
        async with db.transaction() as tx:
            rows.append(await audit.record(
                using_db=tx, actor_kind="staff", actor_id=i, action="case.accepted",
                target_kind="case", target_id=f"C{i}", details={"reason": f"第{i}次", "n": i},
            ))
    return rows


async def test_intact_chain_verifies_and_links_each_row_to_the_last() -> None:
    rows = await write_rows(5)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    report = await audit.verify()
    assert report.ok and report.rows == 5


async def test_edited_row_is_named() -> None:
    rows = await write_rows(5)
    await db.connection().execute_query(
        "UPDATE audit_entry SET details = '{\"reason\":\"改过\",\"n\":2}' WHERE id = " + str(rows[2].id)
    )
    report = await audit.verify()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.row_id, report.problem.seq) == ("altered", rows[2].id, 3)


async def test_edit_that_also_rewrites_the_hash_breaks_the_next_link() -> None:
    rows = await write_rows(4)
    forged = audit.chain_hash(rows[1].prev_hash, {"forged": True})
    await AuditEntry.filter(id=rows[1].id).update(action="case.rejected", hash=forged)
    report = await audit.verify()
    assert report.problem is not None and report.problem.seq == 2  # own content no longer matches


async def test_deleted_row_is_named() -> None:
    rows = await write_rows(5)
    await AuditEntry.filter(id=rows[1].id).delete()
    report = await audit.verify()
    assert report.problem is not None
    assert report.problem.kind == "removed"
    assert report.problem.row_id == rows[2].id
    assert "seq=2 was removed" in report.problem.message


async def test_swapped_pair_is_named() -> None:
    rows = await write_rows(5)
    a, b = rows[1], rows[2]
    fields = ["seq", "actor_kind", "actor_id", "action", "target_kind", "target_id", "details",
              "request_id", "created_at", "prev_hash", "hash"]
    # Swap everything but the physical insertion order (id); park seq to dodge the unique index.
    await AuditEntry.filter(id=a.id).update(seq=-1)
    await AuditEntry.filter(id=b.id).update(**{f: getattr(a, f) for f in fields})
    await AuditEntry.filter(id=a.id).update(**{f: getattr(b, f) for f in fields})
    report = await audit.verify()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.row_id) == ("out_of_order", a.id)


async def test_cli_verify_exit_codes(orm: str, tmp_path) -> None:
    rows = await write_rows(3)
    env = {"DATABASE_URL": orm, "PALMHALL_ENV": "test", "SECRETS_FILE": str(tmp_path / "s.json"),
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, "-m", "backend.cli", "audit", "verify"],
                        env=env, capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "audit chain intact: 3 rows" in ok.stdout
    await AuditEntry.filter(id=rows[1].id).update(actor_id="someone-else")
    bad = subprocess.run([sys.executable, "-m", "backend.cli", "audit", "verify"],
                         env=env, capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1
    assert f"row id={rows[1].id} seq=2 was altered" in bad.stderr
