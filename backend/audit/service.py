"""Write audit rows in the caller's transaction, chained by SHA-256; verify the chain."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from backend import clock
from backend.audit.models import AuditEntry
from backend.logs import request_id_var

GENESIS = "0" * 64
# Any constant works; it names the PostgreSQL advisory lock that serializes chain appends.
_CHAIN_LOCK = 0x70616C6D  # "palm"


def canonical(entry: dict[str, Any]) -> str:
    """The exact bytes a row's hash covers: every content field, sorted, no whitespace."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _content(
    *, seq: int, actor_kind: str, actor_id: str | None, action: str, target_kind: str | None,
    target_id: str | None, details: Any, request_id: str | None, created_at: datetime,
) -> dict[str, Any]:
    return {
        "seq": seq, "actor_kind": actor_kind, "actor_id": actor_id, "action": action,
        "target_kind": target_kind, "target_id": target_id, "details": details,
        "request_id": request_id,
        "created_at": created_at.astimezone(UTC).isoformat(timespec="microseconds"),
    }


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(content)).encode()).hexdigest()


async def record(
    *,
    using_db: BaseDBAsyncClient,
    actor_kind: str,
    actor_id: str | int | None,
    action: str,
    target_kind: str | None = None,
    target_id: str | int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one row in the caller's transaction (it commits or rolls back with the change).

    Never put personal data in `details` unmasked: the log is kept for years.
    """
    if using_db.capabilities.dialect == "postgres":
        # Appends take turns: held to the end of this transaction, so the chain never forks.
        await using_db.execute_query("SELECT pg_advisory_xact_lock($1)", [_CHAIN_LOCK])
    last = await AuditEntry.all().using_db(using_db).order_by("-seq").first()
    seq = (last.seq + 1) if last else 1
    prev_hash = last.hash if last else GENESIS
    # Round to microseconds now so the value hashed is the value stored and read back.
    created_at = clock.now().astimezone(UTC)
    content = _content(
        seq=seq, actor_kind=actor_kind, actor_id=None if actor_id is None else str(actor_id),
        action=action, target_kind=target_kind,
        target_id=None if target_id is None else str(target_id), details=details or {},
        request_id=request_id_var.get(), created_at=created_at,
    )
    return await AuditEntry.create(
        seq=seq, actor_kind=actor_kind, actor_id=content["actor_id"], action=action,
        target_kind=target_kind, target_id=content["target_id"], details=content["details"],
        request_id=content["request_id"], created_at=created_at, prev_hash=prev_hash,
        hash=chain_hash(prev_hash, content), using_db=using_db,
    )


@dataclass(frozen=True)
class ChainProblem:
    row_id: int
    seq: int
    kind: str  # altered, removed, link_broken, out_of_order
    message: str


@dataclass(frozen=True)
class ChainReport:
    rows: int
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def verify(*, batch: int = 1000) -> ChainReport:
    """Walk the chain in insertion order; stop at the first row that does not fit."""
    prev_hash = GENESIS
    expected_seq = 1
    count = 0
    last_id = 0
    while True:
        rows = await AuditEntry.filter(id__gt=last_id).order_by("id").limit(batch)
        if not rows:
            return ChainReport(count, None)
        for row in rows:
            count += 1
            last_id = row.id
            if row.seq != expected_seq:
                if await AuditEntry.filter(seq=expected_seq).exists():
                    return _problem(count, row, "out_of_order", (
                        f"row id={row.id} carries seq {row.seq} where {expected_seq} was expected: "
                        "rows were reordered"))
                return _problem(count, row, "removed", (
                    f"row id={row.id} carries seq {row.seq} where {expected_seq} was expected: "
                    f"row seq={expected_seq} was removed"))
            if row.prev_hash != prev_hash:
                return _problem(count, row, "link_broken", (
                    f"row id={row.id} seq={row.seq} does not link to the row before it: "
                    "a row was removed, inserted or reordered"))
            content = _content(
                seq=row.seq, actor_kind=row.actor_kind, actor_id=row.actor_id, action=row.action,
                target_kind=row.target_kind, target_id=row.target_id, details=row.details,
                request_id=row.request_id, created_at=row.created_at,
            )
            if chain_hash(row.prev_hash, content) != row.hash:
                return _problem(count, row, "altered",
                                f"row id={row.id} seq={row.seq} was altered after it was written")
            prev_hash = row.hash
            expected_seq += 1


def _problem(count: int, row: AuditEntry, kind: str, message: str) -> ChainReport:
    return ChainReport(count, ChainProblem(row_id=row.id, seq=row.seq, kind=kind, message=message))
