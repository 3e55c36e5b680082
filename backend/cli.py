"""The `palmhall` command: serve, worker, migrate and the operators' tools."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from backend.settings import Settings, SettingsError

T = TypeVar("T")


def _settings() -> Settings:
    """Settings as the server builds them: in development, pointed at the fakes the server serves, with their keys
    (kept in SECRETS_FILE), so a command here talks to the same platforms as `palmhall serve`."""
    try:
        settings = Settings.from_env()
        if settings.fakes_enabled:
            from backend import providers

            settings = providers.with_fakes(settings)
        return settings
    except SettingsError as exc:
        click.echo(f"palmhall: {exc}", err=True)
        sys.exit(2)


def run_with_db(fn: Callable[[Settings], Awaitable[T]]) -> T:
    """Run one async operator command with the database (and Redis) open."""
    settings = _settings()

    async def main() -> T:
        from backend import db, logs

        logs.setup(settings.log_level)
        await db.init(settings.database_url, pool_max=2)
        try:
            return await fn(settings)
        finally:
            await db.close()

    return asyncio.run(main())


@click.group()
def main() -> None:
    """palmhall: backend of the township palm-top government service (掌上办)."""


@main.command()
@click.option("--host", default=None, help="bind address (default: HOST)")
@click.option("--port", type=int, default=None, help="port (default: PORT)")
@click.option("--workers", type=int, default=None, help="web worker processes (default: WEB_WORKERS)")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the HTTP server."""
    settings = _settings()
    n = workers or settings.effective_web_workers
    if settings.redis_embedded and n != 1:
        click.echo("palmhall: the in-process Redis serves one process only; using 1 worker", err=True)
        n = 1
    multiproc = settings.prometheus_multiproc_dir or str(Path("var/prometheus").absolute())
    # Must be set before prometheus_client is imported anywhere (here and in the workers).
    shutil.rmtree(multiproc, ignore_errors=True)
    Path(multiproc).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc

    from functools import partial

    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from backend.app import create_app

    host = host or settings.host
    port = port if port is not None else settings.port
    # What follows HOST and PORT (PUBLIC_BASE_URL, the fakes' addresses...) follows --host and --port too.
    settings = settings.with_overrides(host=host, port=port)
    loader = AppLoader(factory=partial(create_app, settings))
    app = loader.load()
    app.prepare(host=host, port=port, workers=n, single_process=(n == 1), motd=False)
    mode = "in-process Redis, single process" if settings.redis_embedded else f"{n} worker processes"
    click.echo(f"palmhall on http://{host}:{port} ({mode}); API docs at http://{host}:{port}/docs")
    if n == 1:
        # Truly one process: the in-process Redis and embedded worker live beside the server.
        Sanic.serve_single(primary=app)
    else:
        Sanic.serve(primary=app, app_loader=loader)


@main.command()
@click.option("--import", "imports", multiple=True, help="extra module registering handlers (repeatable)")
@click.option("--no-periodic", is_flag=True, help="run outbox handlers only, not periodic tasks")
def worker(imports: tuple[str, ...], no_periodic: bool) -> None:
    """Run the outbox worker and the periodic tasks until SIGTERM/SIGINT."""
    settings = _settings()
    if settings.redis_embedded:
        click.echo(
            "palmhall: REDIS_URL is not set; this worker's periodic locks are local to it "
            "(fine alone, not beside other workers)", err=True,
        )

    async def run(settings: Settings) -> None:
        from backend import runtime, wiring
        from backend.app import worker_config
        from backend.jobs.periodic import Scheduler
        from backend.jobs.worker import Worker
        from backend.stores import make_redis

        wiring.load(list(imports))
        redis = make_redis(settings.redis_url)
        runtime.set_current(runtime.Runtime(settings=settings, redis=redis))
        w = Worker(worker_config(settings))
        parts: list[Any] = [w]
        if not no_periodic:
            parts.append(Scheduler(redis, owner=w.name))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: [p.stop() for p in parts])
        try:
            await asyncio.gather(*(p.run() for p in parts))
        finally:
            await redis.aclose()

    run_with_db(run)


@main.command()
def migrate() -> None:
    """Apply the committed database migrations."""
    settings = _settings()
    from backend import db

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            click.echo(f"  applied {app_label}.{name}")

    asyncio.run(db.migrate(settings.database_url, progress=progress))
    click.echo("migrations up to date")
    _check_ids_after_migrate()


def _check_ids_after_migrate() -> None:
    """`identity check-ids` after the migrations: printed, never failing the release (the migrations are in,
    and rows stored before one normal form existed are for an operator to look at)."""
    from backend.identity.commands import run_check

    try:
        report = run_with_db(run_check)
    except Exception as exc:  # the check is advice; the migrations it follows have succeeded
        click.echo(f"identity check could not run ({type(exc).__name__}); try `palmhall identity check-ids`",
                   err=True)
        return
    if report is None:
        click.echo("identity check skipped: no data key configured")
        return
    for line in report.lines():
        click.echo(f"identity check: {line}")
    if report.found:
        click.echo("identity check: found rows to look at (listed above); `palmhall identity check-ids` "
                   "reports them again and exits 1 while any remain")


@main.command()
@click.option("--name", default=None, help="migration name suffix")
@click.option("--check", is_flag=True, help="write nothing; exit 1 when the models have changes without a migration")
def makemigrations(name: str | None, check: bool) -> None:
    """Write a migration for model changes (developers)."""
    from tortoise.cli.cli import run_cli_async

    if check:
        from backend.db.autodetect import pending_changes

        pending = asyncio.run(pending_changes())
        if pending:
            click.echo("models changed without a migration: " + ", ".join(pending), err=True)
            sys.exit(1)
        click.echo("No changes detected")
        return
    argv = ["-c", "backend.db.autodetect.TORTOISE_ORM", "makemigrations"]
    if name:
        argv += ["--name", name]
    sys.exit(asyncio.run(run_cli_async(argv)))


@main.group()
def outbox() -> None:
    """Inspect and replay outbox events."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["pending", "running", "done", "dead"]), default=None)
@click.option("--limit", type=int, default=50)
def outbox_list(status: str | None, limit: int) -> None:
    """Newest events first; dead ones show their last error."""
    from backend.jobs import outbox as ob
    from backend.jobs.models import OutboxStatus

    async def run(_: Settings) -> None:
        events = await ob.list_events(status=OutboxStatus(status) if status else None, limit=limit)
        if not events:
            click.echo("no events")
        for e in events:
            click.echo(f"{e.event_id}  {e.status:<8} attempts={e.attempts}/{e.max_attempts}  "
                       f"{e.topic}  created={e.created_at.isoformat(timespec='seconds')}")
            if e.last_error:
                click.echo("    last error: " + e.last_error.splitlines()[0])

    run_with_db(run)


@outbox.command("replay")
@click.argument("event_id")
def outbox_replay(event_id: str) -> None:
    """Give a dead event a fresh set of attempts."""
    from backend.errors import DomainError
    from backend.jobs import outbox as ob

    try:
        eid = uuid.UUID(event_id)
    except ValueError:
        click.echo(f"not an event id: {event_id}", err=True)
        sys.exit(2)

    async def run(_: Settings) -> None:
        try:
            event = await ob.replay(event_id=eid)
        except DomainError as exc:
            click.echo(f"{exc.code}: {exc.message}", err=True)
            sys.exit(1)
        click.echo(f"{event.event_id} is pending again ({event.topic})")

    run_with_db(run)


@main.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Walk the chain; name the first row altered, removed or reordered (exit 1)."""
    from backend.audit import service

    report = run_with_db(lambda _: service.verify())
    if report.ok:
        click.echo(f"audit chain intact: {report.rows} rows")
        return
    assert report.problem is not None
    click.echo(f"audit chain BROKEN ({report.problem.kind}): {report.problem.message}", err=True)
    sys.exit(1)


@main.group()
def demo() -> None:
    """Demo data for `make run`."""


@demo.command("load")
def demo_load() -> None:
    """Load the demo data once; running it again changes nothing."""
    from backend import demo as demo_data

    loaded = run_with_db(lambda s: demo_data.load(s))
    click.echo("demo data loaded" if loaded else "demo data already present; nothing to do")
    for line in demo_data.describe():
        click.echo("  " + line)


def _domain_errors(fn: Callable[[Settings], Awaitable[Any]]) -> Any:
    """Run with the database; a domain error is printed for the operator and exits 1."""
    from backend.errors import DomainError

    async def guarded(settings: Settings) -> Any:
        try:
            return await fn(settings)
        except DomainError as exc:
            click.echo(f"{exc.code}: {exc.message}", err=True)
            sys.exit(1)
        except ValueError as exc:
            click.echo(f"invalid: {exc}", err=True)
            sys.exit(2)

    return run_with_db(guarded)


ROLES = ["clerk", "hall_admin", "auditor", "admin"]


@main.group()
def staff() -> None:
    """Staff accounts and their roles per hall."""


@staff.command("create")
@click.option("--username", required=True)
@click.option("--name", "display_name", required=True, help="name shown at the counter")
@click.option("--hall", "hall_code", required=True, help="hall code")
@click.option("--role", type=click.Choice(ROLES), required=True)
def staff_create(username: str, display_name: str, hall_code: str, role: str) -> None:
    """Create an account; prints a one-time password that must be changed at first login."""
    from backend.identity import service as identity
    from backend.identity.models import StaffRole

    async def run(_: Settings) -> None:
        member, password = await identity.create_staff(username=username, display_name=display_name,
                                                       hall_code=hall_code, role=StaffRole(role))
        click.echo(f"staff {member.username} created as {role} in {hall_code}")
        click.echo(f"one-time password: {password}")

    _domain_errors(run)


@staff.command("grant")
@click.option("--username", required=True)
@click.option("--hall", "hall_code", required=True)
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--revoke", is_flag=True, help="take the role away instead")
def staff_grant(username: str, hall_code: str, role: str, revoke: bool) -> None:
    """Give (or with --revoke take) a role in a hall; takes effect on the next request."""
    from backend.identity import service as identity
    from backend.identity.models import StaffRole

    async def run(_: Settings) -> None:
        await identity.change_grant(username=username, hall_code=hall_code, role=StaffRole(role),
                                    grant=not revoke, actor_kind="operator", actor_id="cli")
        click.echo(f"{'revoked' if revoke else 'granted'} {role} in {hall_code} for {username}")

    _domain_errors(run)


@main.group()
def kiosk() -> None:
    """Kiosk devices."""


@kiosk.command("register")
@click.option("--hall", "hall_code", required=True)
@click.option("--name", default="自助终端")
def kiosk_register(hall_code: str, name: str) -> None:
    """Register a device; prints its id, a one-time enrollment link (24 h) and its secret (shown once, stored
    encrypted). Opening the link on the kiosk's browser enrolls it with a new secret of its own."""
    from backend.crypto import KeyRing
    from backend.identity import service as identity

    async def run(settings: Settings) -> None:
        device, secret = await identity.register_kiosk(hall_code=hall_code, name=name,
                                                       keyring=KeyRing.parse(settings.data_keys))
        code, expires = await identity.issue_enrollment(device_id=device.device_id)
        click.echo(f"device id: {device.device_id}")
        _echo_enrollment(settings, code, expires)
        click.echo(f"secret:    {secret}")

    _domain_errors(run)


def _echo_enrollment(settings: Settings, code: str, expires: Any) -> None:
    from backend import clock
    from backend.identity import service as identity

    click.echo(f"enrollment link (one use, until {expires.astimezone(clock.SHANGHAI):%Y-%m-%d %H:%M} Beijing time): "
               f"{identity.enrollment_link(settings.public_base_url, code)}")


@kiosk.command("link")
@click.argument("device_id")
def kiosk_link(device_id: str) -> None:
    """A fresh one-time enrollment link for a device: earlier links stop working at once, and using this one
    gives the device a new secret, so the browser holding the old one stops working too."""
    from backend.identity import service as identity

    async def run(settings: Settings) -> None:
        code, expires = await identity.issue_enrollment(device_id=device_id)
        click.echo(f"device id: {device_id}")
        _echo_enrollment(settings, code, expires)

    _domain_errors(run)


@kiosk.command("list")
@click.option("--silent-minutes", type=int, default=10, help="no heartbeat for this long = silent")
def kiosk_list(silent_minutes: int) -> None:
    """Every device, its last contact and software version; silent ones flagged."""
    from backend.identity import service as identity

    async def run(_: Settings) -> None:
        rows = await identity.list_kiosks(silent_after_minutes=silent_minutes)
        if not rows:
            click.echo("no kiosks")
        for k in rows:
            state = "DISABLED" if not k["enabled"] else ("SILENT" if k["silent"] else "ok")
            click.echo(f"{k['device_id']}  hall={k['hall_id']}  {state:<8} last_seen={k['last_seen_at'] or 'never'}"
                       f"  version={k['software_version'] or '-'}  {k['name']}")

    _domain_errors(run)


@kiosk.command("disable")
@click.argument("device_id")
@click.option("--enable", is_flag=True, help="enable again instead")
def kiosk_disable(device_id: str, enable: bool) -> None:
    """Refuse (or with --enable accept again) a device's requests."""
    from backend.identity import service as identity

    async def run(_: Settings) -> None:
        await identity.set_kiosk_enabled(device_id=device_id, enabled=enable)
        click.echo(f"{device_id} {'enabled' if enable else 'disabled'}")

    _domain_errors(run)


@main.group()
def keys() -> None:
    """Encryption keys for personal data."""


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every ciphertext under the first key of PALMHALL_DATA_KEYS."""
    from backend.crypto import KeyRing
    from backend.identity import service as identity

    async def run(settings: Settings) -> None:
        ring = KeyRing.parse(settings.data_keys)
        counts = await identity.rotate_keys(keyring=ring)
        click.echo(f"re-encrypted under key {ring.current}: {counts['resident']} residents, {counts['kiosk']} kiosks")

    _domain_errors(run)


@main.group("settings")
def settings_group() -> None:
    """Configuration."""


@settings_group.command("doc")
@click.option("--readme", type=click.Path(exists=True, dir_okay=False), default=None,
              help="rewrite the table between the settings markers of this file")
def settings_doc(readme: str | None) -> None:
    """Print the configuration table (Markdown) that the README carries."""
    import re

    from backend.settings import markdown_table

    table = markdown_table()
    if readme is None:
        click.echo(table)
        return
    text = Path(readme).read_text(encoding="utf-8")
    new = re.sub(r"(<!-- settings:start -->\n).*?(\n<!-- settings:end -->)",
                 lambda m: m.group(1) + table + m.group(2), text, flags=re.S)
    Path(readme).write_text(new, encoding="utf-8")
    click.echo(f"{readme}: configuration table {'updated' if new != text else 'already current'}")


@settings_group.command("check")
def settings_check() -> None:
    """Load settings as the server would; exit 2 naming what is wrong."""
    s = _settings()
    click.echo(f"settings ok (env={s.env}, database={s.database_url.split('://', 1)[0]}, "
               f"redis={'in-process' if s.redis_embedded else 'server'})")


def _register_domain_commands() -> None:
    """Command groups that live with their domain package."""
    from backend.catalog.calendar_commands import calendar
    from backend.catalog.commands import catalog
    from backend.catalog.hall_commands import hall
    from backend.hall_sync.commands import hall_sync
    from backend.identity.commands import identity_group, regions_group
    from notifications.commands import notifications
    from payments.commands import payments

    for group in (calendar, catalog, hall, payments, hall_sync, notifications, regions_group, identity_group):
        main.add_command(group)


_register_domain_commands()


if __name__ == "__main__":
    main()
