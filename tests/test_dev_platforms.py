"""The development platforms (`make run`: PLATFORM_FAKES) finish every flow. The server is built from the
environment as `palmhall serve` builds it: a payment and its refund settle through the fakes and their signed
notifications, `palmhall payments reconcile` run beside the server reads both fakes' bills, and a restarted
server's main hall still holds every case, so the next step reaches it in order."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sanic import Sanic

from backend import clock
from backend.app import create_app, worker_config
from backend.hall_sync.fake import FakeHall
from backend.hall_sync.models import HallCaseLink
from backend.jobs.worker import Worker
from backend.providers import FAKE_KEY_NAMES
from backend.settings import VARS, Settings
from payments.models import ReconciliationReport
from tests.cases_support import act, build_world
from tests.conftest import (
    ON_POSTGRES,
    REDIS_URL,
    ROOT,
    Live,
    Platforms,
    _truncate_all,
    free_socket,
    start_app,
    stop_app,
)
from tests.payments_support import awaiting_case, counts, payer, start_payment
from tests.test_hall_sync import drain, walk_in


@dataclass
class Dev:
    environ: dict[str, str]
    live: Live
    platforms: Platforms  # the server's own fakes, for the test helpers that log residents in
    hall: FakeHall


@pytest.fixture
def dev_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """What `make run` has: development, no secrets given (they are generated into SECRETS_FILE), fakes on."""
    return {"PALMHALL_ENV": "development", "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL,
            "SECRETS_FILE": str(tmp_path / "var" / "secrets.json"), "FAKES_STATE_DIR": str(tmp_path / "var" / "fakes"),
            "FILES_DIR": str(tmp_path / "var" / "files"), "EMBEDDED_WORKER": "false", "LOG_LEVEL": "WARNING"}


@asynccontextmanager
async def dev_server(env: dict[str, str], *, fresh: bool = False) -> AsyncIterator[Dev]:
    """One `palmhall serve` in development: its settings from the environment, on a port known beforehand."""
    sock = free_socket()
    port = sock.getsockname()[1]
    environ = {**env, "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    Sanic.test_mode = True
    app = create_app(Settings.from_env(environ), name=f"dev_{uuid.uuid4().hex[:8]}")
    server, url = await start_app(app, sock)
    if fresh:
        if ON_POSTGRES:
            await _truncate_all()
        if REDIS_URL:
            await app.ctx.redis.flushdb()
    fakes = app.ctx.fakes
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield Dev(environ=environ, live=Live(app=app, url=url, client=client), hall=fakes["hall"],
                      platforms=Platforms(url=f"{url}/_fakes", wechat=fakes["wechat"], alipay=fakes["alipay"],
                                          realname=fakes["realname"], wechatpay=fakes["wechatpay"],
                                          alipay_trades=fakes["alipay_trades"], sms=fakes["sms"]))
    finally:
        await stop_app(server)
        Sanic._app_registry.pop(app.name, None)


async def palmhall(environ: dict[str, str], *args: str) -> tuple[int, str]:
    """The `palmhall` command in its own process, with the server's environment (as in a second terminal)."""
    env = {k: v for k, v in os.environ.items() if k not in {v.name for v in VARS}}
    env.update(environ)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.cli", *args, cwd=str(ROOT), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


async def test_payments_and_refunds_settle_through_the_fakes_and_reconcile_runs_beside_the_server(
        dev_env: dict[str, str]) -> None:
    async with dev_server(dev_env, fresh=True) as dev:
        live, platforms = dev.live, dev.platforms
        world = await build_world(live)
        day = clock.now().astimezone(clock.SHANGHAI).date()
        for channel, fake in (("wechat", "wechatpay"), ("alipay", "alipay")):
            me = await payer(live, platforms, channel)
            order = (await start_payment(live, me, await awaiting_case(live, world, me))).json()["order"]
            # The resident pays (there is no phone: the developer says so), and the platform notifies palmhall.
            r = await live.client.post(f"/_fakes/{fake}/simulate/pay/{order['out_trade_no']}")
            assert r.status_code == 200, r.text
            assert (await counts(order["out_trade_no"])).state == "paid"
            # A hall admin refunds it; the platform has it under way.
            r = await live.client.post(f"/api/v1/staff/payments/{order['id']}/refunds", json={"reason": "多收退还"},
                                       headers={**world.admin, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201 and r.json()["refund"]["state"] == "processing", r.text
            no = r.json()["refund"]["out_refund_no"]
            waiting = (await live.client.get(f"/_fakes/{fake}/simulate/refunds")).json()["refunds"]
            assert [w.get("out_refund_no") or w.get("out_request_no") for w in waiting] == [no]
            # The platform pays the resident back and says so: nobody touches the database.
            r = await live.client.post(f"/_fakes/{fake}/simulate/refund/{no}")
            assert r.status_code == 200, r.text
            shown = await live.client.get(f"/api/v1/staff/payments/{order['id']}", headers=world.admin)
            assert shown.json()["order"]["state"] == "refunded", shown.text
            assert shown.json()["refunds"][0]["state"] == "success"
            c = await counts(order["out_trade_no"])
            assert (c.ledger_rows, c.balance) == (2, 0)

        # A second terminal: the operator's command reads both fakes' bills, with the keys the server uses.
        code, out = await palmhall(dev.environ, "payments", "reconcile", "--date", day.isoformat())
        assert code == 0, out
        assert "OK (wechat 2 lines, alipay 2 lines, ledger 4 lines)" in out, out
        assert (await ReconciliationReport.get(day=day)).ok is True
    # The fakes' keys were generated once, into the secrets file, readable by its owner only.
    secrets_file = Path(dev_env["SECRETS_FILE"])
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert set(FAKE_KEY_NAMES) <= set(json.loads(secrets_file.read_text()))


async def test_a_restarted_server_finds_the_main_hall_as_it_left_it(dev_env: dict[str, str]) -> None:
    async with dev_server(dev_env, fresh=True) as dev:
        world = await build_world(dev.live)
        case_no = await walk_in(dev.live, world)
        await drain(Worker(worker_config(dev.live.app.ctx.settings)))
        assert dev.hall.steps(case_no) == ["created:submitted", "status:submitted"]
        hall_case_id = dev.hall.cases[case_no].hall_case_id

    async with dev_server(dev_env) as dev:  # `make run` again: a new process, the same var/
        assert dev.hall.steps(case_no) == ["created:submitted", "status:submitted"]
        r = await act(dev.live, world.clerk, case_no, "accept")
        assert r.status_code == 200, r.text
        await drain(Worker(worker_config(dev.live.app.ctx.settings)))
        assert dev.hall.steps(case_no) == ["created:submitted", "status:submitted", "status:accepted"]
        assert dev.hall.calls["out_of_order"] == 0
        link = await HallCaseLink.get(case_no=case_no)
        assert (link.hall_case_id, link.last_seq_sent, link.last_seq_acked) == (hall_case_id, 3, 3)
        # The fake's console (what a developer looks at) shows the case where the hall left it.
        listed = (await dev.live.client.get("/_fakes/hall/console/cases")).json()["cases"]
        assert [c["status"] for c in listed if c["case_no"] == case_no] == ["accepted"]
