"""`palmhall calendar load|status`: load a year's official holiday arrangement, and see which years are known."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from backend.settings import Settings


@click.group()
def calendar() -> None:
    """Official holidays and 调休 make-up workdays, year by year."""


@calendar.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="check the file and report, but load nothing")
def load(file: Path, dry_run: bool) -> None:
    """Make FILE the official arrangement of its year (replacing an earlier load of that year).

    FILE is JSON: {"year": 2027, "source": "<the notice's title and number>", "holidays":
    [{"name": "春节", "days": ["2027-02-05", ...]}], "workdays": [{"name": "春节调休", "days":
    ["2027-02-14"]}]}. Make-up workdays are Saturdays or Sundays. A loaded year takes precedence
    over the chinese-calendar library; due dates that were provisional are worked out again.
    Exit 1 listing every problem when the file is invalid (nothing is loaded then).
    """
    from backend.catalog import calendar as service
    from backend.cli import run_with_db  # here, not at the top: backend.cli imports this module
    from backend.errors import DomainError

    try:
        data = json.loads(file.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        click.echo(f"palmhall: {file}: not valid UTF-8 JSON ({exc}); nothing was loaded", err=True)
        sys.exit(1)
    try:
        # Checked before the database is opened: a wrong file needs no database to be refused.
        arrangement = service.validate_year(data)
        if dry_run:
            click.echo(f"{file.name}: {arrangement.year} is valid: {len(arrangement.holidays)} holidays, "
                       f"{len(arrangement.workdays)} make-up workdays (dry run, nothing loaded)")
            _warnings(arrangement.warnings)
            return

        async def run(_: Settings) -> service.LoadReport:
            return await service.load_year(data=data, source_name=str(file), actor_id="cli")

        report = run_with_db(run)
    except DomainError as exc:
        problems = (exc.details or {}).get("problems", []) if isinstance(exc.details, dict) else []
        click.echo(f"palmhall: {file}: {exc.message}; nothing was loaded ({len(problems)} problem(s)):", err=True)
        for p in problems:
            click.echo(f"  {p['field']}: {p['message']}", err=True)
            click.echo(f"  {' ' * len(p['field'])}  {p['message_en']} [{p['code']}]", err=True)
        sys.exit(1)
    click.echo(f"{report.year} loaded from {file.name}: {report.holidays} holidays, "
               f"{report.workdays} make-up workdays" + (" (replaces the earlier load)" if report.replaced else ""))
    click.echo(f"  source: {report.notice}")
    _warnings(report.warnings)


def _warnings(warnings: Any) -> None:
    for w in warnings:
        click.echo(f"  warning: {w.message} ({w.message_en})", err=True)


@calendar.command("status")
@click.option("--from", "first", type=int, default=None, help="first year to show")
@click.option("--to", "last", type=int, default=None, help="last year to show")
def status(first: int | None, last: int | None) -> None:
    """Which years are known, and from where: loaded, the library, or unknown.

    By default last year to next year, and every loaded year. In an unknown year booking is
    refused and due dates are provisional until someone loads it.
    """
    from backend.catalog import calendar as service
    from backend.cli import run_with_db

    years: range | None = None
    if first is not None or last is not None:
        # One end given: the other is the usual default, stretched so the range is never empty.
        this = service.today().year
        if first is None:
            first = min(this - 1, last if last is not None else this)
        if last is None:
            last = max(this + 1, first)
        if first > last:
            raise click.BadParameter(f"--from {first} is after --to {last}")
        years = range(first, last + 1)

    async def run(_: Settings) -> list[dict[str, Any]]:
        return await service.status(years)

    for row in run_with_db(run):
        click.echo(_status_line(row))


def _status_line(row: dict[str, Any]) -> str:
    year, source = row["year"], row["source"]
    if source == "unknown":
        return (f"{year}  UNKNOWN  not loaded: bookings refused, due dates provisional "
                f"(load it with `palmhall calendar load FILE`)")
    counts = f"{row['holidays']} holidays, {row['workdays']} make-up workdays"
    if source == "library":
        return f"{year}  library  {row['notice']}: {counts}"
    from backend import clock

    at = row["loaded_at"].astimezone(clock.SHANGHAI).strftime("%Y-%m-%d %H:%M")
    return f"{year}  loaded   {row['notice']} (loaded {at} Asia/Shanghai): {counts}"
