"""Merge a newer Ministry of Civil Affairs list (《中华人民共和国县以上行政区划代码》) into the region table.

The list is the ministry's page saved as HTML, or plain text or CSV lines of `code name`. Merging the list of
year Y: a code it brings that is not in force starts in Y; a code in force under another name ends in Y-1 and
starts again in Y under the new name; a code in force that the list lacks ends in Y-1 but stays in the table
(ID numbers keep it). Codes no ministry list carries (the 市辖区-style groupings of the statistical code and
830000, the code of Taiwan residents' residence permits) are never ended by a merge.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from backend.identity.regions import (
    FIRST_YEAR,
    TABLE,
    Period,
    read_provenance,
    read_table,
    write_provenance,
    write_table,
)

NOT_IN_MINISTRY_LISTS_NAMES = frozenset({"市辖区", "县", "省直辖县级行政单位", "自治区直辖县级行政单位",
                                         "省直辖行政单位"})
NOT_IN_MINISTRY_LISTS_CODES = frozenset({"830000"})
# A list that would end more than this share of the codes in force is probably partial or not a list at all.
MAX_ENDED_SHARE = 0.2

_CODE = re.compile(r"[0-9]{6}")
_SEPARATORS = re.compile(r"[\s,，;；|]+")


class ListError(ValueError):
    """The file is not a usable list, or cannot be merged; nothing was changed."""


# ---- reading a list ------------------------------------------------------------------------


class _Rows(HTMLParser):
    """Cells of every table row: the ministry's page is one big table of code and name cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self._close_row()
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._close_cell()
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._close_cell()
        elif tag in ("tr", "table"):
            self._close_row()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def _close_cell(self) -> None:
        if self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
        self._cell = None

    def _close_row(self) -> None:
        self._close_cell()
        if self._row:
            self.rows.append(self._row)
        self._row = None

    def close(self) -> None:
        super().close()
        self._close_row()


def _clean(text: str) -> str:
    # NFKC turns &nbsp; indents and full-width characters into plain ones; footnote marks are not part of a name.
    return unicodedata.normalize("NFKC", text).strip().strip("*").strip()


def _entries(text: str) -> list[list[str]]:
    """Each entry's non-empty fields, from table rows when the text is HTML, else from lines."""
    if re.search(r"<\s*tr[\s>]", text, re.I):
        parser = _Rows()
        parser.feed(text)
        parser.close()
        return [[c for c in (_clean(cell) for cell in row) if c] for row in parser.rows]
    # Text copied from the page may run the code into the name ("110000北京市").
    lines = (re.sub(r"^([0-9]{6})(?=[^\s0-9])", r"\1 ", _clean(line)) for line in text.splitlines())
    return [[c for c in (_clean(t.strip('"')) for t in _SEPARATORS.split(line)) if c] for line in lines]


def parse_list(text: str) -> dict[str, str]:
    """code -> name of every region in the list; anything that is not a code and a name (titles, headers,
    notes) is skipped. Refuses a list that names one code twice differently or holds no code at all."""
    listed: dict[str, str] = {}
    for fields in _entries(text):
        at = next((i for i, f in enumerate(fields) if _CODE.fullmatch(f)), None)
        if at is None or at + 1 >= len(fields):
            continue
        code, name = fields[at], fields[at + 1]
        if _CODE.fullmatch(name) or not re.search(r"[\u4e00-\u9fff]", name):
            continue
        if listed.get(code, name) != name:
            raise ListError(f"the list names {code} twice: {listed[code]} and {name}")
        listed[code] = name
    if not listed:
        raise ListError("no region code and name found (expected the ministry's page, or lines of `code name`)")
    return listed


def read_list(path: Path) -> dict[str, str]:
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return parse_list(raw.decode(encoding))
        except UnicodeDecodeError:
            continue
    raise ListError(f"{path.name} is neither UTF-8 nor GB18030 text")


# ---- merging -------------------------------------------------------------------------------


@dataclass
class MergeResult:
    year: int
    listed: int
    periods: list[Period]
    new: list[Period] = field(default_factory=list)
    renamed: list[tuple[Period, Period]] = field(default_factory=list)  # (old, new)
    ended: list[Period] = field(default_factory=list)  # as they are after the merge
    kept: list[Period] = field(default_factory=list)  # in force, not in the list, never in any list

    @property
    def changed(self) -> bool:
        return bool(self.new or self.renamed or self.ended)


def _end(period: Period, year: int) -> Period:
    return Period(code=period.code, name=period.name, first_year=period.first_year, last_year=year - 1)


def merge(periods: list[Period], listed: dict[str, str], year: int) -> MergeResult:
    """The table after the list of `year` (later than every period's first year)."""
    open_rows = {p.code: p for p in periods if p.in_force}
    result = MergeResult(year=year, listed=len(listed), periods=[p for p in periods if not p.in_force])
    out = result.periods
    for code, name in sorted(listed.items()):
        current = open_rows.pop(code, None)
        if current is not None and current.name == name:
            out.append(current)
            continue
        started = Period(code=code, name=name, first_year=year, last_year=None)
        if current is None:
            result.new.append(started)
        else:
            out.append(_end(current, year))
            result.renamed.append((current, started))
        out.append(started)
    for current in open_rows.values():
        if current.name in NOT_IN_MINISTRY_LISTS_NAMES or current.code in NOT_IN_MINISTRY_LISTS_CODES:
            out.append(current)
            result.kept.append(current)
            continue
        closed = _end(current, year)
        out.append(closed)
        result.ended.append(closed)
    return result


def refresh(*, source: Path, year: int, table: Path = TABLE, today: date, force: bool = False) -> MergeResult:
    """Merge the list in `source` as the list of `year` into `table` and its provenance; nothing is written
    when the list is refused."""
    provenance = read_provenance(table)
    newest = int(provenance["newest_list_year"])
    if not FIRST_YEAR <= year <= today.year + 1:
        raise ListError(f"--year {year} is outside {FIRST_YEAR}–{today.year + 1}")
    if year <= newest:
        # Lists go in once each, oldest first: an older list would end the codes created since.
        raise ListError(f"the table already holds the lists up to {newest}; --year must be later")
    listed = read_list(source)
    periods = read_table(table)
    result = merge(periods, listed, year)
    in_force = sum(1 for p in periods if p.in_force)
    if not force and in_force and len(result.ended) > MAX_ENDED_SHARE * in_force:
        raise ListError(f"the list would end {len(result.ended)} of the {in_force} codes in force: it looks partial "
                        "(use --force if it really is the whole list)")
    write_table(table, result.periods)
    provenance["newest_list_year"] = year
    provenance["updated"] = today.isoformat()
    provenance.setdefault("merges", []).append({
        "year": year, "file": source.name, "merged_on": today.isoformat(), "codes_listed": len(listed),
        "new": len(result.new), "renamed": len(result.renamed), "ended": len(result.ended),
    })
    write_provenance(table, provenance)
    return result
