"""Domain errors with stable codes, and the one place that turns any error into the JSON shape."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from sanic import Request
from sanic.exceptions import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    SanicException,
)
from sanic.response import HTTPResponse, json

log = logging.getLogger("palmhall.errors")

# code -> (HTTP status, Chinese message). Domain packages add theirs with `register_codes`.
CODES: dict[str, tuple[int, str]] = {
    "request.not_found": (404, "请求的地址不存在"),
    "request.method_not_allowed": (405, "不支持该请求方法"),
    "request.invalid": (400, "请求格式不正确"),
    "request.too_large": (413, "请求内容过大"),
    "validation.failed": (422, "提交的内容有误，请检查后重试"),
    "rate_limited": (429, "操作过于频繁，请稍后再试"),
    "not_found": (404, "未找到该对象"),
    "ready.unavailable": (503, "服务暂不可用"),
    "internal": (500, "服务器内部错误，请稍后重试"),
}


def register_codes(codes: dict[str, tuple[int, str]]) -> None:
    for code, entry in codes.items():
        if code in CODES and CODES[code] != entry:
            raise ValueError(f"error code {code} registered twice with different meanings")
        CODES[code] = entry


class DomainError(Exception):
    """An error a caller can act on; `code` is stable, `message` is for a person (Chinese)."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        details: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        known = CODES.get(code)
        if known is None and (status is None or message is None):
            raise ValueError(f"unregistered error code {code!r}")
        self.code = code
        self.status = status if status is not None else known[0]  # type: ignore[index]
        self.message = message if message is not None else known[1]  # type: ignore[index]
        self.details = details
        self.headers = headers or {}
        super().__init__(f"{code}: {self.message}")


class InvalidValue(ValueError):
    """A value a validator refuses: `code` is stable (e.g. "id_number.checksum"), the message Chinese."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class InvalidFields(ValueError):
    """Several values refused at once by one validator (e.g. every unstorable value in a body): each
    problem is {"path": [keys and indexes below the validated object], "code", "message" (Chinese)}."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        super().__init__("；".join(f"{'.'.join(map(str, p['path']))}: {p['message']}" for p in problems))


class FieldErrors(DomainError):
    """Validation failed; `details` lists every bad field at once."""

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__("validation.failed", details={"fields": fields})

    @classmethod
    def from_pydantic(cls, exc: ValidationError, prefix: str = "") -> FieldErrors:
        fields = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "body"
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, InvalidFields):
                for problem in cause.problems:
                    where = ".".join(str(p) for p in (*err["loc"], *problem["path"])) or "body"
                    fields.append({"field": prefix + where, "code": problem["code"], "message": problem["message"]})
                continue
            if isinstance(cause, InvalidValue):
                code, message = cause.code, str(cause)
            else:
                code, message = err["type"], _zh_message(err["type"], err["msg"])
            fields.append({"field": prefix + loc, "code": code, "message": message})
        return cls(fields)


_ZH = {
    "missing": "必填项",
    "string_too_short": "内容过短",
    "string_too_long": "内容过长",
    "string_pattern_mismatch": "格式不正确",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "float_parsing": "应为数字",
    "bool_parsing": "应为是或否",
    "date_from_datetime_parsing": "日期格式应为 YYYY-MM-DD",
    "date_parsing": "日期格式应为 YYYY-MM-DD",
    "datetime_parsing": "时间格式不正确",
    "enum": "取值不在允许范围内",
    "literal_error": "取值不在允许范围内",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "greater_than": "数值过小",
    "less_than": "数值过大",
    "extra_forbidden": "不允许的字段",
    "json_invalid": "不是有效的 JSON",
    "model_type": "格式不正确",
    "dict_type": "应为对象",
    "list_type": "应为列表",
    "string_type": "应为文本",
    "finite_number": "应为有限的数字",
}


def _zh_message(kind: str, fallback: str) -> str:
    if kind == "value_error":
        # Validators raise ValueError("中文说明"); pydantic prefixes "Value error, ".
        return fallback.removeprefix("Value error, ").strip()
    return _ZH.get(kind, "格式不正确")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    code: str,
    *,
    message: str | None = None,
    details: Any = None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> HTTPResponse:
    known_status, known_message = CODES.get(code, (500, CODES["internal"][1]))
    return json(
        error_body(code, message or known_message, details),
        status=status or known_status,
        headers=headers,
        ensure_ascii=False,
    )


async def handle_exception(request: Request, exc: BaseException) -> HTTPResponse:
    """Sanic's error handler: every failure leaves in the same JSON shape."""
    if isinstance(exc, DomainError):
        return error_response(
            exc.code, message=exc.message, details=exc.details, status=exc.status, headers=exc.headers
        )
    if isinstance(exc, ValidationError):
        fe = FieldErrors.from_pydantic(exc)
        return error_response(fe.code, details=fe.details)
    if isinstance(exc, NotFound):
        return error_response("request.not_found", details={"path": request.path})
    if isinstance(exc, MethodNotAllowed):
        return error_response("request.method_not_allowed", details={"method": request.method})
    if isinstance(exc, PayloadTooLarge):
        return error_response("request.too_large")
    if isinstance(exc, (BadRequest, RangeNotSatisfiable)):
        return error_response("request.invalid")
    if isinstance(exc, SanicException) and exc.status_code < 500:
        return error_response("request.invalid", status=exc.status_code)
    request_id = getattr(request.ctx, "request_id", None)
    log.exception("unhandled error", extra={"path": request.path})
    return error_response("internal", details={"request_id": request_id})
