"""`palmhall regions refresh|status` (the GB/T 2260 code table) and `palmhall identity check-ids` (stored ID
numbers and phones against their normal form)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from backend.identity import regions
from backend.settings import Settings

if TYPE_CHECKING:
    from backend.identity import idcheck

_TABLE_OPTION = click.option(
    "--table", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=regions.TABLE,
    show_default="the table shipped in the package",
    help="the region table (CSV) to work on; its provenance is the .provenance.json beside it")


@click.group("regions")
def regions_group() -> None:
    """GB/T 2260 administrative region codes, which ID numbers begin with."""


@regions_group.command("refresh")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--year", type=int, required=True, help="the year of the list (later than the newest one merged)")
@click.option("--force", is_flag=True, help="merge even a list that would end many codes at once")
@_TABLE_OPTION
def refresh(file: Path, year: int, force: bool, table: Path) -> None:
    """Merge the Ministry of Civil Affairs list of YEAR in FILE into the region table.

    FILE is the ministry's page 《中华人民共和国县以上行政区划代码》 saved as HTML, or text or CSV lines of
    `code name`. New codes start in YEAR; a renamed code gets a new period under its new name; codes in force
    that the list lacks end in YEAR-1 but stay known (an ID number keeps its code). Exit 1, changing nothing,
    when the file holds no list or the year is not later than the newest list merged.
    """
    from backend import clock
    from backend.identity.regions.refresh import ListError
    from backend.identity.regions.refresh import refresh as merge_list

    today = clock.now().astimezone(clock.SHANGHAI).date()
    try:
        result = merge_list(source=file, year=year, table=table, today=today, force=force)
    except (ListError, regions.TableError) as exc:
        click.echo(f"palmhall: {file.name}: {exc}; nothing was changed", err=True)
        sys.exit(1)
    click.echo(f"merged the {year} list from {file.name} ({result.listed} codes) into {table.name}:")
    for p in result.new:
        click.echo(f"  new      {p.code} {p.name} (from {year})")
    for old, new in result.renamed:
        click.echo(f"  renamed  {old.code} {old.name} -> {new.name} (from {year})")
    for p in result.ended:
        click.echo(f"  ended    {p.code} {p.name} (last in force {p.last_year}; still known)")
    if not result.changed:
        click.echo("  no change")
    if result.kept:
        click.echo(f"  {len(result.kept)} codes no ministry list carries (市辖区-style groupings, 830000) "
                   "stay as they were")
    click.echo(f"{len(result.new)} new, {len(result.renamed)} renamed, {len(result.ended)} ended; "
               f"provenance updated (newest list {year}, {today.isoformat()})")


@regions_group.command("status")
@_TABLE_OPTION
def status(table: Path) -> None:
    """The table's sources, the newest list merged, and how many codes it knows."""
    try:
        periods = regions.read_table(table)
        provenance = regions.read_provenance(table)
    except regions.TableError as exc:
        click.echo(f"palmhall: {exc}", err=True)
        sys.exit(1)
    codes = {p.code for p in periods}
    in_force = {p.code for p in periods if p.in_force}
    click.echo(f"table: {table}")
    click.echo(f"newest list merged: {provenance['newest_list_year']} (updated {provenance.get('updated', '?')})")
    click.echo(f"codes known: {len(codes)} ({len(in_force)} in force, {len(codes) - len(in_force)} no longer), "
               f"{len(periods)} periods")
    for source in provenance.get("sources", []):
        click.echo(f"source {source.get('years', '?')}: {source.get('name', '?')}")
    for m in provenance.get("merges", []):
        click.echo(f"merged {m['year']} list from {m['file']} on {m['merged_on']}: {m['new']} new, "
                   f"{m['renamed']} renamed, {m['ended']} ended")
    if provenance.get("licence"):
        click.echo(f"licence: {provenance['licence']}")


@click.group("identity")
def identity_group() -> None:
    """Residents' identities."""


@identity_group.command("check-ids")
def check_ids() -> None:
    """Report stored ID numbers and phones not in their normal form (full-width or other non-ASCII digits,
    lowercase x, spaces), and people split across keyed hashes or residents, by table and row id with the
    numbers masked. Changes nothing. Exit 1 when anything is found."""
    from backend.cli import run_with_db  # here, not at the top: backend.cli imports this module

    report = run_with_db(run_check)
    if report is None:
        click.echo("palmhall: PALMHALL_DATA_KEYS holds no usable key; stored values cannot be read", err=True)
        sys.exit(2)
    for line in report.lines():
        click.echo(line)
    if report.found:
        sys.exit(1)


async def run_check(settings: Settings) -> idcheck.Report | None:
    """The check over the open database; None when no data key is configured."""
    from backend.crypto import KeyError_, KeyRing
    from backend.identity import idcheck

    try:
        keyring = KeyRing.parse(settings.data_keys)
    except KeyError_:
        return None
    return await idcheck.check(keyring=keyring, hash_key=settings.hash_key)
