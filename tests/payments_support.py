"""What the payments tests share: a case awaiting its fee, residents on each channel, the worker, counts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from backend.jobs.models import OutboxEvent
from backend.jobs.worker import Worker, WorkerConfig
from payments.models import LedgerEntry, PaymentOrder, PaymentStateChange
from tests.cases_support import LI, LICENCE, ZHANG, World, act, application, upload_id
from tests.conftest import Live, Platforms
from tests.test_identity import alipay_login, auth, wechat_login

FEE = 1250  # the LICENCE item's 工本费


@dataclass
class Payer:
    headers: dict[str, str]
    channel: str
    subject: str  # WeChat openid or Alipay open_id


async def payer(live: Live, platforms: Platforms, channel: str) -> Payer:
    if channel == "wechat":
        openid = f"o_{uuid.uuid4().hex[:12]}"
        tokens = await wechat_login(live, platforms, openid=openid)
        person = ZHANG
    else:
        openid = f"ali_{uuid.uuid4().hex[:12]}"
        tokens = await alipay_login(live, platforms, open_id=openid)
        person = LI
    headers = auth(tokens)
    r = await live.client.put("/api/v1/mp/me/real-name", json=person, headers=headers)
    assert r.status_code == 200, r.text
    return Payer(headers=headers, channel=channel, subject=openid)


async def awaiting_case(live: Live, world: World, me: Payer, hall: str = "HX") -> str:
    """A LICENCE case in `hall` (HX or HY), accepted by a clerk there and waiting for its fee (clock paused)."""
    mats = [{"code": c, "upload_id": await upload_id(live, me.headers)} for c in ("ID", "FORM", "LEASE")]
    r = await live.client.post("/api/v1/mp/cases", headers=me.headers,
                               json=application(world.halls[hall], LICENCE, mats))
    assert r.status_code == 201, r.text
    case_no = str(r.json()["case_no"])
    clerk = world.clerk if hall == "HX" else world.other_clerk
    assert (await act(live, clerk, case_no, "accept")).status_code == 200
    r = await act(live, clerk, case_no, "start_review")
    assert r.json()["status"] == "awaiting_payment", r.text
    return case_no


async def start_payment(live: Live, me: Payer, case_no: str, key: str | None = None) -> httpx.Response:
    return await live.client.post("/api/v1/mp/payments", json={"case_no": case_no, "channel": me.channel},
                                  headers={**me.headers, "Idempotency-Key": key or uuid.uuid4().hex})


async def run_worker() -> int:
    """Run the outbox until it is empty; returns how many events ran."""
    worker = Worker(WorkerConfig(lease_seconds=30, backoff_base=0.01, backoff_max=0.01))
    total = 0
    while n := await worker.run_once():
        total += n
    return total


@dataclass
class Counts:
    state: str
    paid_changes: int
    ledger_rows: int
    balance: int
    succeeded_events: int


async def counts(out_trade_no: str) -> Counts:
    order = await PaymentOrder.get(out_trade_no=out_trade_no)
    entries = await LedgerEntry.filter(order_id=order.id)
    return Counts(
        state=str(order.state),
        paid_changes=await PaymentStateChange.filter(order_id=order.id, to_state="paid").count(),
        ledger_rows=len(entries), balance=sum(e.amount_fen for e in entries),
        succeeded_events=await OutboxEvent.filter(topic="payment.succeeded").count(),
    )


def wire(platforms: Platforms, live: Live) -> None:
    """The fakes deliver notifications to this live server."""
    platforms.wechatpay.notify_redirect = live.url
    platforms.alipay_trades.notify_redirect = live.url


def events(rows: list[Any], topic: str) -> list[Any]:
    return [r for r in rows if r.topic == topic]
