"""`palmhall catalog import|export`: load the service-item catalog from JSON or CSV, and write it back out."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from backend.settings import Settings

_LABELS = {"added": "added", "changed": "changed", "unchanged": "unchanged", "refused": "REFUSED"}


@click.group()
def catalog() -> None:
    """Service items (事项): import and export the catalog."""


@catalog.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default=None,
              help="file format (default: from the file's suffix)")
def import_(file: Path, fmt: str | None) -> None:
    """Add or update items by implementation code; exit 1 if any row was refused.

    JSON: a list of items or {"items": [...]}. CSV: UTF-8 with a header row; the cells of
    materials, fees, channels and halls hold JSON lists. Amounts are integer fen.
    """
    from backend.catalog import importer
    from backend.cli import run_with_db  # here, not at the top: backend.cli imports this module

    try:
        rows = importer.read_rows(file, fmt)
    except importer.ImportFileError as exc:
        click.echo(f"palmhall: {file}: {exc}", err=True)
        sys.exit(2)

    async def run(_: Settings) -> importer.ImportReport:
        # The bar goes to stderr so the report on stdout stays clean for a log or a pipe.
        with click.progressbar(length=len(rows), label=f"importing {len(rows)} rows from {file.name}",
                               file=sys.stderr, show_pos=True, show_percent=True) as bar:
            return await importer.import_rows(rows, on_row=lambda _: bar.update(1), actor_id="cli")

    report = run_with_db(run)
    counts = report.counts
    click.echo(f"{file.name}: {counts['added']} added, {counts['changed']} changed, "
               f"{counts['unchanged']} unchanged, {counts['refused']} refused ({len(rows)} rows)")
    for outcome in importer.OUTCOMES:
        for r in report.of(outcome):
            version = f"  v{r.version}" if r.version else ""
            click.echo(f"  {_LABELS[outcome]:<9} row {r.row:<4} {r.code or '-'}  {r.name or ''}{version}")
            for reason in r.reasons:
                click.echo(f"      {reason['field']}: {reason['message']} [{reason['code']}]")
    if report.refused:
        click.echo(f"{report.refused} row(s) refused; fix them and import the file again "
                   "(rows already imported will show as unchanged)", err=True)
        sys.exit(1)


@catalog.command("export")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="file to write (default: standard output)")
def export(fmt: str, output: Path | None) -> None:
    """Write every item as import rows: importing the result again changes nothing."""
    from backend.catalog import service
    from backend.cli import run_with_db

    items = run_with_db(lambda _: service.export_items())
    text = to_json(items) if fmt == "json" else to_csv(items)
    if output is None:
        click.echo(text, nl=False)
        return
    # utf-8-sig for CSV so spreadsheet programs recognise the Chinese text.
    output.write_text(text, encoding="utf-8-sig" if fmt == "csv" else "utf-8")
    click.echo(f"exported {len(items)} items to {output}", err=True)


def to_json(items: list[dict[str, Any]]) -> str:
    return json.dumps({"items": items}, ensure_ascii=False, indent=2) + "\n"


def to_csv(items: list[dict[str, Any]]) -> str:
    from backend.catalog.schemas import ItemIn

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = list(ItemIn.model_fields)
    writer.writerow(columns)
    for item in items:
        writer.writerow([_cell(item[c]) for c in columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)
