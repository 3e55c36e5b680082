"""Input bounds in one place: path converters, the base of every request schema, and bounded types.

Whatever a caller sends passes one of these before anything else reads it, so a value that cannot be
stored (an integer past 64 bits, a string longer than its column, a NUL character or a lone surrogate,
which PostgreSQL refuses; NaN, a date in year 9999) answers 4xx and never reaches a query. New routes
inherit the bounds: `install` gives the app's router bounded converters before any route is added
(`<id:int>`, `<x:str>`, `<day:ymd>` and `<name:path>` are bounded, and known kinds such as `<no:case_no>`
have their exact shape), and every request schema derives from `Input`. Tests enumerate the router and
the schemas and fail on anything unbounded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from sanic import Sanic

from backend.errors import InvalidFields, InvalidValue

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1
# The longest string any request field may carry unless the field says less (an item's legal basis).
STR_MAX = 20_000
# Dates a person may ask about: wide enough for any record and any plan, narrow enough that no
# arithmetic on them leaves Python's date range and no statistic scans a century.
MIN_DAY, MAX_DAY = date(2000, 1, 1), date(2099, 12, 31)
MAX_DEPTH = 32  # nesting of a request body; ours are at most four deep


# ---- path parameters ------------------------------------------------------------------------


@dataclass(frozen=True)
class PathKind:
    """A path parameter type: the raw segment must match `pattern` whole, and `convert` must take it."""

    label: str
    pattern: str  # no anchors and no capturing groups: the router composes it into regex routes
    convert: Callable[[str], Any]
    schema: dict[str, Any]  # as the OpenAPI document shows it
    description: str

    def cast(self) -> Callable[[str], Any]:
        whole = re.compile(self.pattern)
        convert = self.convert

        def cast(value: str) -> Any:
            if not isinstance(value, str) or not whole.fullmatch(value):
                raise ValueError("path parameter out of bounds")
            return convert(value)

        # The router's generated code calls casts by name from one module namespace shared by every app:
        # each kind's name must be its own.
        cast.__name__ = cast.__qualname__ = f"palmhall_path_{self.label}"
        cast.__annotations__ = {"value": "str", "return": "Any"}
        return cast


def _int_up_to(top: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        number = int(value)
        if not 1 <= number <= top:
            raise ValueError("out of range")
        return number

    return convert


def _day(value: str) -> date:
    day = date.fromisoformat(value)
    if not MIN_DAY <= day <= MAX_DAY:
        raise ValueError("out of range")
    return day


def _same(value: str) -> str:
    return value


PATH_KINDS: dict[str, PathKind] = {kind.label: kind for kind in (
    # Sanic's own labels, bounded: a route written `<order_id:int>` gets these.
    PathKind("int", r"[1-9][0-9]{0,18}", _int_up_to(INT64_MAX),
             {"type": "integer", "format": "int64", "minimum": 1, "maximum": INT64_MAX},
             "an id of a 64-bit column: 1 to 2^63-1"),
    PathKind("str", r"[A-Za-z0-9._~-]{1,64}", _same,
             {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z0-9._~-]{1,64}$"},
             "a short plain word (letters, digits and ._~-), at most 64 characters"),
    PathKind("ymd", r"[0-9]{4}-[0-9]{2}-[0-9]{2}", _day,
             {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
             f"a day YYYY-MM-DD from {MIN_DAY} to {MAX_DAY}"),
    # A file below a static folder: no hidden names, no "..", bounded.
    PathKind("path", r"[A-Za-z0-9_-][A-Za-z0-9._/-]{0,199}", _same,
             {"type": "string", "maxLength": 200, "pattern": r"^[A-Za-z0-9_-][A-Za-z0-9._/-]{0,199}$"},
             "a file name below a static folder"),
    # Ids of 32-bit columns (halls, counters, staff).
    PathKind("int32", r"[1-9][0-9]{0,9}", _int_up_to(INT32_MAX),
             {"type": "integer", "format": "int32", "minimum": 1, "maximum": INT32_MAX},
             "an id of a 32-bit column: 1 to 2^31-1"),
    # Known kinds, by their exact shape and column length.
    PathKind("case_no", r"[0-9]{19,32}", _same,
             {"type": "string", "minLength": 19, "maxLength": 32, "pattern": r"^[0-9]{19,32}$"},
             "a case number (办件编号): region code, day and serial, 19 to 32 digits"),
    PathKind("cert_no", r"DZ[0-9]{21,38}", _same,
             {"type": "string", "minLength": 23, "maxLength": 40, "pattern": r"^DZ[0-9]{21,38}$"},
             "an e-certificate number (证照编号): DZ, the case number and a serial"),
    PathKind("item_code", r"[A-Za-z0-9_-]{1,40}", _same,
             {"type": "string", "minLength": 1, "maxLength": 40, "pattern": r"^[A-Za-z0-9_-]{1,40}$"},
             "a service item's implementation code (实施编码), at most 40 characters"),
    PathKind("session_id", r"[0-9a-f]{32}", _same,
             {"type": "string", "minLength": 32, "maxLength": 32, "pattern": r"^[0-9a-f]{32}$"},
             "a login session (32 hex digits)"),
    PathKind("qr_token", r"[A-Za-z0-9_-]{1,64}", _same,
             {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z0-9_-]{1,64}$"},
             "a signed QR token (base64url)"),
)}
PATH_CASTS: dict[str, Callable[[str], Any]] = {label: kind.cast() for label, kind in PATH_KINDS.items()}


def install(app: Sanic) -> None:
    """Give the app's router the bounded converters. Before any route is added: a route keeps the
    converter its label had when it was added."""
    if app.router.routes:
        raise RuntimeError("bounds.install must run before any route is added")
    for label, kind in PATH_KINDS.items():
        app.router.register_pattern(label, PATH_CASTS[label], f"^(?:{kind.pattern})$")


def document(app: Sanic) -> None:
    """Show each path parameter's bounds in the OpenAPI document (sanic-ext cannot read them from a cast)."""
    from sanic_ext.extensions.openapi.builders import OperationStore
    from sanic_ext.extensions.openapi.types import Schema

    store = OperationStore()
    for route in app.router.routes:
        for param in route.defined_params.values():
            kind = PATH_KINDS.get(param.label)
            if kind is None:
                continue
            operation = store[route.handler]
            if any(p.fields.get("name") == param.name for p in operation.parameters):
                continue
            schema = Schema(**kind.schema)
            operation.parameter(param.name, schema, "path", required=True, description=kind.description)


def unbounded_params(app: Sanic) -> list[str]:
    """Every path parameter of the app's routes whose converter is not one of ours, as 'path: name (label)'."""
    ours = set(PATH_CASTS.values())
    return [f"/{route.path}: {param.name} ({param.label})" for route in app.router.routes
            for param in route.defined_params.values() if param.cast not in ours]


# ---- request schemas ------------------------------------------------------------------------

Id = Annotated[int, Field(ge=1, le=INT64_MAX)]  # a row of a 64-bit id column
Id32 = Annotated[int, Field(ge=1, le=INT32_MAX)]  # a row of a 32-bit id column (halls, counters, staff)
Fen = Annotated[int, Field(ge=0, le=INT32_MAX)]  # money in integer fen, as the 32-bit amount columns hold it
DAY_MESSAGE = f"日期应在{MIN_DAY}至{MAX_DAY}之间"


def _bounded_day(day: date) -> date:
    if not MIN_DAY <= day <= MAX_DAY:
        raise InvalidValue("date.out_of_range", DAY_MESSAGE)
    return day


# Every date field of a request: refused out of bounds while the field itself is validated, so no validator
# that works with the date (a period's end, a default span) ever sees year 9999.
Day = Annotated[date, AfterValidator(_bounded_day)]


def _label(key: Any) -> str | int:
    """A key as an error may echo it: short, and encodable (a lone surrogate becomes "?")."""
    if isinstance(key, int):
        return key
    return str(key)[:64].encode("utf-8", "replace").decode("utf-8")


def _problem(path: list[str | int], code: str, message: str) -> dict[str, Any]:
    return {"path": [_label(p) for p in path], "code": code, "message": message}


def _text_problem(value: str, path: list[str | int]) -> dict[str, Any] | None:
    if "\x00" in value:
        return _problem(path, "string.nul", "不能包含空字符（\\0）")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _problem(path, "string.surrogate", "包含无法保存的字符（孤立的代理项）")
    if len(value) > STR_MAX:
        return _problem(path, "string_too_long", "内容过长")
    return None


def raw_problems(data: Any, path: list[str | int] | None = None, depth: int = 0) -> Iterator[dict[str, Any]]:
    """What in raw input (parsed JSON, query values) no column can hold: every string, number, key and
    nested value is looked at, whatever the schema says of it (free-form fields included)."""
    path = path or []
    if depth > MAX_DEPTH:
        yield _problem(path, "nesting.too_deep", "嵌套层级过深")
    elif isinstance(data, str):
        problem = _text_problem(data, path)
        if problem:
            yield problem
    elif isinstance(data, bool) or data is None:
        return
    elif isinstance(data, int):
        if not INT64_MIN <= data <= INT64_MAX:
            yield _problem(path, "int.out_of_range", "数值超出允许范围")
    elif isinstance(data, float):
        if not math.isfinite(data):
            yield _problem(path, "number.not_finite", "应为有限的数字")
    elif isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str):
                problem = _text_problem(key, [*path, key])
                if problem:
                    yield problem
                    continue
            yield from raw_problems(value, [*path, key], depth + 1)
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            yield from raw_problems(value, [*path, i], depth + 1)


def _value_problems(value: Any, path: list[str | int]) -> Iterator[dict[str, Any]]:
    """What a validated value holds that no column can: integers parsed from text (a query) past 64 bits."""
    if isinstance(value, (BaseModel, bool)):
        return  # a nested schema checks itself
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            yield _problem(path, "int.out_of_range", "数值超出允许范围")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _value_problems(item, [*path, key])
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            yield from _value_problems(item, [*path, i])


def _document_bounds(schema: dict[str, Any]) -> None:
    """Integers without bounds of their own are shown with the 64-bit ones every schema enforces."""
    if schema.get("type") == "integer":
        if "minimum" not in schema and "exclusiveMinimum" not in schema:
            schema["minimum"] = INT64_MIN
        if "maximum" not in schema and "exclusiveMaximum" not in schema:
            schema["maximum"] = INT64_MAX
    for value in schema.values():
        if isinstance(value, dict):
            _document_bounds(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _document_bounds(item)


class Input(BaseModel):
    """The base of every request schema, bodies and queries alike.

    Strings are at most STR_MAX characters unless the field says less, and hold no NUL character and no
    lone surrogate; numbers are finite; integers fit 64 bits (narrower where the field says, e.g. Id32); every
    date field is a Day (MIN_DAY to MAX_DAY; tests/test_input_bounds.py holds every schema to all of this).
    """

    model_config = ConfigDict(str_max_length=STR_MAX, allow_inf_nan=False,
                              json_schema_extra=lambda schema: _document_bounds(schema))

    @model_validator(mode="before")
    @classmethod
    def _raw_bounds(cls, data: Any) -> Any:
        problems = list(raw_problems(data))
        if problems:
            raise InvalidFields(problems)
        return data

    @model_validator(mode="after")
    def _value_bounds(self) -> Input:
        fields = type(self).model_fields
        problems = [p for name, value in self.__dict__.items()
                    for p in _value_problems(value, [(fields[name].alias or name) if name in fields else name])]
        if problems:
            raise InvalidFields(problems)
        return self

