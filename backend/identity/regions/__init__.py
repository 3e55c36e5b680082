"""GB/T 2260 administrative region codes (county level and above) ever in force since 1980, shipped as data.

An ID number keeps the region code of the place its holder was first registered, even after that county was
renamed or merged away, so a code is known when it was in force in any year of the table; its periods say
which years and under which name. The table is `gb2260.csv` in this package (code, name, first year, last year
or empty while still in force), with its provenance beside it in `gb2260.provenance.json`; `palmhall regions
refresh` merges a newer Ministry of Civil Affairs list into it. A process reads it once, on first use.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

TABLE = Path(__file__).resolve().with_name("gb2260.csv")
COLUMNS = ("code", "name", "first_year", "last_year")
FIRST_YEAR = 1980  # the oldest list merged: a first year of 1980 means "already in force in 1980"
_CODE = re.compile(r"[0-9]{6}")


class TableError(ValueError):
    """The shipped (or given) table or its provenance cannot be read; the message says where."""


@dataclass(frozen=True)
class Period:
    """One code under one name, from the first to the last yearly list that carried it."""

    code: str
    name: str
    first_year: int
    last_year: int | None  # None: still in force in the newest list merged

    @property
    def in_force(self) -> bool:
        return self.last_year is None


def provenance_path(table: Path) -> Path:
    return table.with_name(table.stem + ".provenance.json")


def read_table(path: Path = TABLE) -> list[Period]:
    periods: list[Period] = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        if tuple(next(reader, ())) != COLUMNS:
            raise TableError(f"{path}: the first line must be {','.join(COLUMNS)}")
        for n, row in enumerate(reader, start=2):
            try:
                code, name, first, last = row
                period = Period(code=code, name=name, first_year=int(first), last_year=int(last) if last else None)
            except ValueError:
                raise TableError(f"{path}:{n}: expected code,name,first_year,last_year") from None
            if not _CODE.fullmatch(code) or not name or (
                    period.last_year is not None and period.last_year < period.first_year):
                raise TableError(f"{path}:{n}: not a six-digit code with a name and its years in order")
            periods.append(period)
    return periods


def write_table(path: Path, periods: list[Period]) -> None:
    rows = sorted(periods, key=lambda p: (p.code, p.first_year, p.last_year or 9999, p.name))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows((p.code, p.name, p.first_year, "" if p.last_year is None else p.last_year) for p in rows)
    tmp.replace(path)


def read_provenance(table: Path = TABLE) -> dict[str, Any]:
    path = provenance_path(table)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TableError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("newest_list_year"), int):
        raise TableError(f"{path}: needs at least newest_list_year")
    return data


def write_provenance(table: Path, data: dict[str, Any]) -> None:
    path = provenance_path(table)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


@cache
def _known() -> frozenset[str]:
    return frozenset(p.code for p in read_table(TABLE))


def is_known(code: str) -> bool:
    """Was `code` (six ASCII digits) a county-level or higher region code in any year since 1980?"""
    return code in _known()
