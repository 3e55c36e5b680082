"""Message templates (operator-editable JSON files) and rendering that fits each channel's field rules."""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from backend import qr
from backend.clock import SHANGHAI

PACKAGED = Path(__file__).resolve().parent / "templates"

ELLIPSIS = "…"
ASCII_ELLIPSIS = "..."

# WeChat subscribe-message field kinds (the key without its number) and their longest value.
# https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
WECHAT_LIMITS: dict[str, int] = {
    "thing": 20, "character_string": 32, "phrase": 5, "name": 10, "number": 32, "letter": 32,
    "symbol": 5, "phone_number": 17, "car_number": 8, "amount": 12, "time": 32, "date": 32,
}
# Kinds WeChat accepts only ASCII in: a "…" there would be refused (47003), so "..." is used.
_ASCII_KINDS = frozenset({"character_string", "number", "letter", "symbol", "phone_number"})
ALIPAY_LIMIT = 50  # keyword values in Alipay template messages
SMS_PARAM_LIMIT = 35  # Aliyun SMS: one variable's longest value
INBOX_TITLE_LIMIT = 40
INBOX_BODY_LIMIT = 500

_KIND = re.compile(r"^([a-z_]+?)\d*$")


class TemplateError(ValueError):
    """A template file that cannot be used; names the file."""


@dataclass(frozen=True)
class Template:
    key: str
    topic: str
    audience: str  # resident or staff
    category: str | None
    urgent: bool
    page: dict[str, str] | None
    inbox: dict[str, str]
    wechat: dict[str, Any] | None
    alipay: dict[str, Any] | None
    sms: dict[str, Any] | None
    when: dict[str, Any] = field(default_factory=dict)

    def applies(self, payload: dict[str, Any]) -> bool:
        levels = self.when.get("level_in")
        return levels is None or payload.get("level") in levels

    def channels(self) -> list[str]:
        return [c for c in ("wechat", "alipay", "sms") if getattr(self, c) is not None]


@dataclass(frozen=True)
class Category:
    key: str
    name: str
    required: bool


@dataclass(frozen=True)
class Catalogue:
    templates: dict[str, Template]  # by topic
    categories: dict[str, Category]

    def for_topic(self, topic: str) -> Template | None:
        return self.templates.get(topic)

    def required(self, template: Template) -> bool:
        cat = self.categories.get(template.category or "")
        return bool(cat and cat.required)

    def by_provider_id(self, channel: str) -> dict[str, Template]:
        """Provider template id -> template, for recording consent."""
        out: dict[str, Template] = {}
        for t in self.templates.values():
            spec = getattr(t, channel, None)
            if spec is not None:
                out[str(spec["template_id"])] = t
        return out


def load(directory: str | Path | None = None) -> Catalogue:
    """Every `*.json` template of `directory` (the packaged ones when empty), checked now, not at send time."""
    root = Path(directory) if directory else PACKAGED
    return _load(str(root.resolve()))


@lru_cache(maxsize=4)
def _load(root: str) -> Catalogue:
    base = Path(root)
    cats_file = base / "_categories.json"
    try:
        cats_raw = json.loads(cats_file.read_text(encoding="utf-8"))
        categories = {c["key"]: Category(c["key"], c["name"], bool(c.get("required"))) for c in cats_raw["categories"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TemplateError(f"{cats_file}: {exc}") from None
    templates: dict[str, Template] = {}
    for path in sorted(base.glob("*.json")):
        if path.name.startswith("_"):
            continue
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            t = Template(
                key=path.stem, topic=raw["topic"], audience=raw.get("audience", "resident"),
                category=raw.get("category"), urgent=bool(raw.get("urgent", False)), page=raw.get("page"),
                inbox=raw["inbox"], wechat=raw.get("wechat"), alipay=raw.get("alipay"), sms=raw.get("sms"),
                when=raw.get("when") or {},
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TemplateError(f"{path}: {exc}") from None
        if t.audience == "resident" and t.category not in categories:
            raise TemplateError(f"{path}: unknown category {t.category!r}")
        for key in (t.wechat or {}).get("data", {}):
            if _kind(key) not in WECHAT_LIMITS:
                raise TemplateError(f"{path}: WeChat field {key!r} has no known kind")
        templates[t.topic] = t
    return Catalogue(templates=templates, categories=categories)


# ---- values ------------------------------------------------------------------------------


class _Values(dict[str, Any]):
    """Missing values render as empty rather than failing a message that must go out."""

    def __missing__(self, key: str) -> str:
        return ""


def fill(text: str, values: dict[str, Any]) -> str:
    return string.Formatter().vformat(text, (), _Values(values))


def cut(text: str, limit: int, *, ascii_only: bool = False) -> str:
    """At most `limit` characters; a longer value ends in an ellipsis, so the cut shows."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    mark = ASCII_ELLIPSIS if ascii_only else ELLIPSIS
    if limit <= len(mark):
        return text[:limit]
    return text[: limit - len(mark)] + mark


def _kind(key: str) -> str:
    m = _KIND.match(key)
    return m.group(1) if m else key


def _as_datetime(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)


def time_text(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y年%m月%d日 %H:%M")


def wechat_value(key: str, text: str) -> str:
    """A value WeChat accepts for field `key` (thing1, time2, ...): formatted for its kind, never too long."""
    kind = _kind(key)
    if kind == "time":
        moment = _as_datetime(text)
        return time_text(moment) if moment else cut(text, WECHAT_LIMITS[kind])
    if kind == "date":
        moment = _as_datetime(text)
        if moment is not None:
            return moment.astimezone(SHANGHAI).strftime("%Y年%m月%d日")
        try:
            return date.fromisoformat(text).strftime("%Y年%m月%d日")
        except ValueError:
            return cut(text, WECHAT_LIMITS[kind])
    if kind == "amount":
        try:
            amount = Decimal(text)
            if amount.is_finite():
                return cut(f"{amount:.2f}元", WECHAT_LIMITS[kind])
        except InvalidOperation:
            pass
        return cut(text, WECHAT_LIMITS[kind])
    if kind == "number":
        digits = re.sub(r"[^0-9.]", "", text)
        return digits[: WECHAT_LIMITS[kind]]  # an ellipsis is no number: WeChat would refuse it
    if kind == "phrase":
        # Chinese characters only: a mark would make WeChat refuse the whole message.
        return "".join(text.split())[: WECHAT_LIMITS[kind]]
    if kind in _ASCII_KINDS:
        text = "".join(ch for ch in text if ch.isascii())
        return cut(text, WECHAT_LIMITS[kind], ascii_only=True)
    return cut(text, WECHAT_LIMITS.get(kind, 20))


# ---- rendering ---------------------------------------------------------------------------


def page_of(template: Template, values: dict[str, Any], *, secret: str) -> str | None:
    """The mini-program page with a signed token: a raw id in a link would let anyone walk the ids."""
    if not template.page:
        return None
    path = template.page["path"]
    raw_id = fill(template.page.get("id", ""), values)
    if not raw_id.isdigit():
        return path
    token = qr.make_token(secret, template.page["kind"], int(raw_id))
    return f"{path}?token={token}"


def render(template: Template, values: dict[str, Any], *, secret: str, wechat_state: str = "formal"
           ) -> dict[str, dict[str, Any]]:
    """Every channel's message for one recipient: {"inbox": ..., "wechat": ..., "alipay": ..., "sms": ...}."""
    page = page_of(template, values, secret=secret)
    out: dict[str, dict[str, Any]] = {
        "inbox": {
            "title": cut(fill(template.inbox["title"], values), INBOX_TITLE_LIMIT),
            "body": cut(fill(template.inbox["body"], values), INBOX_BODY_LIMIT),
            "page": page,
        }
    }
    if template.wechat is not None:
        data = {k: {"value": wechat_value(k, fill(v, values))} for k, v in template.wechat["data"].items()}
        wechat: dict[str, Any] = {"template_id": template.wechat["template_id"], "data": data,
                                  "miniprogram_state": wechat_state, "lang": "zh_CN"}
        if page:
            wechat["page"] = page
        out["wechat"] = wechat
    if template.alipay is not None:
        adata = {k: {"value": cut(fill(v, values), ALIPAY_LIMIT)} for k, v in template.alipay["data"].items()}
        alipay: dict[str, Any] = {"user_template_id": template.alipay["template_id"], "data": adata}
        if page:
            alipay["page"] = page
        out["alipay"] = alipay
    if template.sms is not None:
        params = {k: cut(fill(v, values), SMS_PARAM_LIMIT) for k, v in template.sms["params"].items()}
        out["sms"] = {"template_code": template.sms["template_code"], "params": params}
    return out
