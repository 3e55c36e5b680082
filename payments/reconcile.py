"""Daily reconciliation: the WeChat Pay trade bill and the Alipay bill of a day against our ledger, line by line."""

from __future__ import annotations

import csv
from datetime import date
from typing import Any

from backend import db
from backend.audit import service as audit
from backend.errors import DomainError
from backend.identity.models import StaffRole
from backend.identity.service import StaffPrincipal
from backend.settings import Settings
from payments import alipay as ali
from payments import channels as channels_mod
from payments.models import EntryKind, LedgerEntry, PayChannel, PaymentOrder, ReconciliationReport

Key = tuple[str, str, str]  # (channel, kind, our reference: out_trade_no or out_refund_no)


def parse_wechat_bill(text: str) -> list[dict[str, Any]]:
    """Lines of a WeChat Pay trade bill (ALL): every field starts with a backquote; a summary follows."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split(",")]
    out: list[dict[str, Any]] = []
    for raw in csv.reader(lines[1:]):
        if len(raw) != len(header):
            break  # the summary block
        row = dict(zip(header, (c.strip().lstrip("`") for c in raw), strict=True))
        state = row.get("交易状态", "")
        if state == "SUCCESS":
            out.append({"kind": "payment", "ref": row["商户订单号"], "out_trade_no": row["商户订单号"],
                        "platform_no": row.get("微信订单号", ""), "amount_fen": ali.yuan_to_fen(row["应结订单金额"])})
        elif state == "REFUND":
            out.append({"kind": "refund", "ref": row["商户退款单号"], "out_trade_no": row["商户订单号"],
                        "platform_no": row.get("微信退款单号", ""), "amount_fen": ali.yuan_to_fen(row["退款金额"])})
    return out


async def _ours(day: date) -> dict[Key, dict[str, Any]]:
    ours: dict[Key, dict[str, Any]] = {}
    for e in await LedgerEntry.filter(business_day=day).prefetch_related("order"):
        ref = e.order.out_trade_no if e.kind == EntryKind.PAYMENT else e.ref.split(":", 2)[2]
        ours[(str(e.channel), str(e.kind), ref)] = {"amount_fen": abs(e.amount_fen),
                                                   "out_trade_no": e.order.out_trade_no}
    return ours


async def compare(day: date, theirs_by_channel: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    ours = await _ours(day)
    theirs: dict[Key, dict[str, Any]] = {}
    for channel, lines in theirs_by_channel.items():
        for line in lines:
            theirs[(channel, line["kind"], line["ref"])] = line
    differences: list[dict[str, Any]] = []
    for key in sorted(set(ours) | set(theirs)):
        channel, kind, ref = key
        mine, platform = ours.get(key), theirs.get(key)
        base = {"channel": channel, "kind": kind, "ref": ref,
                "out_trade_no": (mine or platform or {}).get("out_trade_no")}
        if mine is None and platform is not None:
            order = await PaymentOrder.get_or_none(out_trade_no=platform["out_trade_no"])
            if order is None:
                differences.append({**base, "problem": "missing_ours", "theirs_fen": platform["amount_fen"]})
            else:
                differences.append({**base, "problem": "state_mismatch", "theirs_fen": platform["amount_fen"],
                                    "our_state": str(order.state)})
        elif platform is None and mine is not None:
            differences.append({**base, "problem": "missing_theirs", "ours_fen": mine["amount_fen"]})
        elif mine is not None and platform is not None and mine["amount_fen"] != platform["amount_fen"]:
            differences.append({**base, "problem": "amount_mismatch", "ours_fen": mine["amount_fen"],
                                "theirs_fen": platform["amount_fen"]})
    return differences


async def run(*, day: date, settings: Settings) -> dict[str, Any]:
    """Fetch both bills, compare, store the report (replacing an earlier run of the same day)."""
    ch = channels_mod.for_settings(settings)
    wechat = parse_wechat_bill(await ch.wechatpay.trade_bill(day.isoformat()))
    alipay = ali.parse_bill(await ali.bill(ch.alipay, day.isoformat()))
    differences = await compare(day, {PayChannel.WECHAT.value: wechat, PayChannel.ALIPAY.value: alipay})
    ours = await _ours(day)
    summary = {"wechat_lines": len(wechat), "alipay_lines": len(alipay), "ledger_lines": len(ours),
               "differences": len(differences)}
    existing = await ReconciliationReport.get_or_none(day=day)
    if existing is None:
        await ReconciliationReport.create(day=day, ok=not differences, differences=differences, summary=summary)
    else:
        await ReconciliationReport.filter(id=existing.id).update(ok=not differences, differences=differences,
                                                                 summary=summary)
    return {"date": day.isoformat(), "ok": not differences, "summary": summary, "differences": differences}


async def stored(*, day: date, halls: set[int] | None = None) -> dict[str, Any]:
    """The day's report. With `halls`, only the differences about orders of those halls (each says its hall):
    a line naming no order of ours, and the day's totals, belong to no hall and are for a deployment admin."""
    report = await ReconciliationReport.get_or_none(day=day)
    if report is None:
        raise DomainError("payment.report_not_found")
    differences: list[dict[str, Any]] = list(report.differences)
    named = {d.get("out_trade_no") or (d["ref"] if d.get("kind") == "payment" else None) for d in differences}
    hall_of = dict(await PaymentOrder.filter(out_trade_no__in=sorted(n for n in named if n)).values_list(
        "out_trade_no", "hall_id"))
    differences = [{**d, "hall_id": hall_of.get(d.get("out_trade_no") or d["ref"])} for d in differences]
    summary: dict[str, Any] = dict(report.summary)
    if halls is not None:
        differences = [d for d in differences if d["hall_id"] in halls]
        summary = {"differences": len(differences)}
    return {"date": day.isoformat(), "ok": report.ok, "summary": summary, "differences": differences,
            "checked_at": report.updated_at.isoformat()}


# Who reads a stored report: admins the whole of it, hall admins and auditors what concerns their halls.
REPORT_READERS = (StaffRole.HALL_ADMIN, StaffRole.AUDITOR)


def scope_for(staff: StaffPrincipal) -> set[int] | None:
    """The halls whose lines `staff` may read; None for an admin, who reads the whole report."""
    if staff.halls_with(StaffRole.ADMIN):
        return None
    halls = staff.halls_with(*REPORT_READERS)
    if not halls:
        raise DomainError("auth.forbidden", details={"needs": [r.value for r in (*REPORT_READERS, StaffRole.ADMIN)]})
    return halls


async def run_for(*, day: date, staff: StaffPrincipal, settings: Settings) -> dict[str, Any]:
    """An admin reconciles a day now (the bills are fetched again and the report replaced); audited. Only an admin:
    the run reads both platforms' whole bills, which belong to no hall."""
    if not staff.halls_with(StaffRole.ADMIN):
        raise DomainError("auth.forbidden", details={"needs": [StaffRole.ADMIN.value]})
    report = await run(day=day, settings=settings)
    async with db.transaction() as tx:
        await audit.record(using_db=tx, actor_kind="staff", actor_id=staff.id, action="payment.reconciled",
                           target_kind="reconciliation", target_id=day.isoformat(),
                           details={"ok": report["ok"], "summary": report["summary"]})
    return await stored(day=day, halls=scope_for(staff))


def render(report: dict[str, Any]) -> str:
    lines = [f"reconciliation {report['date']}: {'OK' if report['ok'] else 'DIFFERENCES'} "
             f"(wechat {report['summary']['wechat_lines']} lines, alipay {report['summary']['alipay_lines']} lines, "
             f"ledger {report['summary']['ledger_lines']} lines)"]
    for d in report["differences"]:
        amounts = " ".join(f"{k}={d[k]}" for k in ("ours_fen", "theirs_fen", "our_state") if k in d)
        lines.append(f"  {d['problem']:<16} {d['channel']:<7} {d['kind']:<8} {d['ref']} {amounts}")
    return "\n".join(lines)
