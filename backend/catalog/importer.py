"""Read a catalog file (JSON or CSV), validate every row, upsert the valid ones, report on each."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from tortoise.exceptions import IntegrityError

from backend.catalog import service
from backend.catalog.models import ServiceItem
from backend.catalog.schemas import ItemIn
from backend.errors import FieldErrors

DEMO_FILE = Path(__file__).resolve().parents[2] / "data" / "catalog" / "demo_items.json"

RowOutcome = Literal["added", "changed", "unchanged", "refused"]
Reason = dict[str, str]  # {"field", "code", "message"}
OUTCOMES: tuple[RowOutcome, ...] = ("added", "changed", "unchanged", "refused")


class ImportFileError(ValueError):
    """The file as a whole cannot be read (encoding, syntax, header): no row is looked at."""


@dataclass
class RawRow:
    number: int  # JSON: 1-based position in the list; CSV: spreadsheet row (the header is row 1)
    data: Any


@dataclass
class RowResult:
    row: int
    code: str | None
    name: str | None
    outcome: RowOutcome
    reasons: list[Reason] = field(default_factory=list)
    version: int | None = None  # the item's current version after the row (not for refused rows)


@dataclass
class ImportReport:
    results: list[RowResult] = field(default_factory=list)

    def of(self, outcome: RowOutcome) -> list[RowResult]:
        return [r for r in self.results if r.outcome == outcome]

    @property
    def counts(self) -> dict[str, int]:
        return {o: len(self.of(o)) for o in OUTCOMES}

    @property
    def refused(self) -> int:
        return len(self.of("refused"))


# ---- reading ------------------------------------------------------------------------------------


def read_rows(path: Path, fmt: str | None = None) -> list[RawRow]:
    """Rows of a JSON or CSV file (format from the suffix unless given)."""
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in ("json", "csv"):
        raise ImportFileError("无法识别文件格式：请使用 .json 或 .csv 文件，或用 --format 指定")
    try:
        # utf-8-sig: spreadsheet programs write a BOM in front of UTF-8 CSV; it must not become part of a header.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError("文件不是 UTF-8 编码（Excel 请另存为“CSV UTF-8”）") from None
    except OSError as exc:
        raise ImportFileError(f"无法读取文件：{exc.strerror}") from None
    return parse_json(text) if fmt == "json" else parse_csv(text)


def parse_json(text: str) -> list[RawRow]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFileError(f"不是有效的 JSON（第{exc.lineno}行第{exc.colno}列）") from None
    rows = doc.get("items") if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        raise ImportFileError("JSON 应为事项列表，或 {\"items\": [...]}")
    return [RawRow(number=i, data=r) for i, r in enumerate(rows, start=1)]


def parse_csv(text: str) -> list[RawRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        raise ImportFileError("CSV 文件为空或缺少表头")
    known = set(ItemIn.model_fields)
    unknown = [h for h in header if h not in known]
    if unknown:
        raise ImportFileError(f"表头含未知列：{'、'.join(unknown)}（可用列：{', '.join(ItemIn.model_fields)}）")
    if len(set(header)) != len(header):
        raise ImportFileError("表头有重复的列")
    rows = []
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue  # blank lines spreadsheets leave at the end
        if len(cells) > len(header):
            rows.append(RawRow(number=number, data=None))  # refused below with its own reason
            continue
        # An empty cell means "not given", so the field's default (or "required") applies.
        rows.append(RawRow(number=number, data={h: c for h, c in zip(header, cells, strict=False) if c.strip()}))
    return rows


# ---- validating and importing --------------------------------------------------------------------


def validate_row(data: Any) -> tuple[ItemIn | None, list[Reason]]:
    """The row as an ItemIn, or every reason it is refused (field, stable code, Chinese message)."""
    if not isinstance(data, dict):
        message = "该行的列数多于表头" if data is None else "每一行应为一个对象（JSON object）"
        return None, [{"field": "row", "code": "import.row_shape", "message": message}]
    try:
        return ItemIn.model_validate(data), []
    except ValidationError as exc:
        return None, FieldErrors.from_pydantic(exc).details["fields"]


def _hall_codes(data: Any) -> list[str]:
    halls = data.get("halls") if isinstance(data, dict) else None
    if isinstance(halls, str):
        try:
            halls = json.loads(halls)
        except ValueError:
            return []
    return [h for h in halls if isinstance(h, str)] if isinstance(halls, list) else []


async def import_rows(rows: list[RawRow], *, on_row: Callable[[RowResult], None] | None = None,
                      actor_id: str = "import") -> ImportReport:
    """Validate and upsert each row in its own transaction; a refused row never stops the others."""
    report = ImportReport()
    first_seen: dict[str, int] = {}
    for raw in rows:
        result = await _import_one(raw, first_seen, actor_id)
        report.results.append(result)
        if on_row is not None:
            on_row(result)
    return report


async def _import_one(raw: RawRow, first_seen: dict[str, int], actor_id: str) -> RowResult:
    data = raw.data if isinstance(raw.data, dict) else {}
    code = str(data.get("code") or "").strip().upper() or None
    name = str(data.get("name") or "").strip() or None
    item, reasons = validate_row(raw.data)
    if item is None:
        # Unknown halls are told now too, so the person fixes the row once (一次性告知).
        missing = await service.missing_halls(_hall_codes(raw.data))
        if missing and not any(r["field"].startswith("halls") for r in reasons):
            reasons.append({"field": "halls", "code": "catalog.unknown_hall",
                            "message": f"服务大厅不存在：{'、'.join(missing)}"})
        return RowResult(row=raw.number, code=code, name=name, outcome="refused", reasons=reasons)
    if item.code in first_seen:
        return RowResult(row=raw.number, code=item.code, name=item.name, outcome="refused", reasons=[{
            "field": "code", "code": "import.duplicate_code",
            "message": f"实施编码与第{first_seen[item.code]}行重复，同一文件中每个事项只能出现一次"}])
    first_seen[item.code] = raw.number
    try:
        outcome = await service.upsert_item(row=item, actor_kind="operator", actor_id=actor_id)
    except FieldErrors as exc:
        return RowResult(row=raw.number, code=item.code, name=item.name, outcome="refused",
                         reasons=exc.details["fields"])
    except IntegrityError:
        # Another import added the same code between our read and our insert.
        return RowResult(row=raw.number, code=item.code, name=item.name, outcome="refused", reasons=[{
            "field": "code", "code": "import.conflict", "message": "该事项正被同时导入，请稍后重试"}])
    stored = await ServiceItem.get(code=item.code)
    return RowResult(row=raw.number, code=item.code, name=item.name, outcome=outcome,
                     version=stored.current_version)


async def import_file(path: Path, *, fmt: str | None = None, on_row: Callable[[RowResult], None] | None = None,
                      actor_id: str = "import") -> ImportReport:
    return await import_rows(read_rows(path, fmt), on_row=on_row, actor_id=actor_id)
