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
from urllib.parse import urlencode

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
# Alipay template messages (alipay.open.app.mini.templatemessage.send) name their fields keyword1, keyword2...
_ALIPAY_FIELD = re.compile(r"^keyword\d{1,2}$")
SMS_PARAM_LIMIT = 35  # Aliyun SMS: one variable's longest value
# Aliyun SMS: template codes are SMS_ and digits there (our fakes use names), variables are identifiers.
_SMS_CODE = re.compile(r"^SMS_[A-Za-z0-9_]{1,60}$")
_SMS_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,29}$")
INBOX_TITLE_LIMIT = 40
INBOX_BODY_LIMIT = 500

_KIND = re.compile(r"^([a-z_]+?)\d*$")
# A `when` condition: `<payload field>_in` or `<payload field>_not_in`, with the list of values.
_WHEN = re.compile(r"^([a-z_]+?)_(not_in|in)$")


class TemplateError(ValueError):
    """A template file that cannot be used; names the file."""


@dataclass(frozen=True)
class Template:
    key: str
    topic: str
    audience: str  # resident or staff
    category: str | None
    urgent: bool
    page: dict[str, Any] | None  # path; kind and id for a signed token; query for public parameters
    inbox: dict[str, str]
    wechat: dict[str, Any] | None
    alipay: dict[str, Any] | None
    sms: dict[str, Any] | None
    when: dict[str, Any] = field(default_factory=dict)
    # A variant that deliberately tells no one (the old appointment of a reschedule: the new one's message says it).
    silent: bool = False

    def applies(self, payload: dict[str, Any]) -> bool:
        """Every condition of `when` holds: `level_in: [1, 2]`, `by_in: ["hall"]`, `bar_id_not_in: [null]`."""
        for key, values in self.when.items():
            m = _WHEN.match(key)
            if m is None:  # refused when the file was loaded; a template built by hand applies to nothing
                return False
            inside = payload.get(m.group(1)) in values
            if inside != (m.group(2) == "in"):
                return False
        return True

    def channels(self) -> list[str]:
        return [c for c in ("wechat", "alipay", "sms") if getattr(self, c) is not None]


@dataclass(frozen=True)
class Category:
    key: str
    name: str
    required: bool


@dataclass(frozen=True)
class Catalogue:
    templates: dict[str, Template]  # by key (the file's name): `topic` or `topic.variant`
    categories: dict[str, Category]

    def variants(self, topic: str) -> list[Template]:
        """The topic's templates, those with conditions first (by key), the unconditional one last."""
        return sorted((t for t in self.templates.values() if t.topic == topic), key=lambda t: (not t.when, t.key))

    def for_event(self, topic: str, payload: dict[str, Any]) -> Template | None:
        """The first variant whose conditions the event meets (e.g. a cancellation by the hall, not by the
        resident), else the topic's unconditional template, else None: the event sends nothing."""
        return next((t for t in self.variants(topic) if t.applies(payload)), None)

    def topics(self) -> set[str]:
        return {t.topic for t in self.templates.values()}

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
            if raw.get("silent") is True:
                if not raw.get("when"):
                    raise TemplateError(f"{path}: a silent template must say `when` it applies")
                templates[path.stem] = Template(key=path.stem, topic=raw["topic"], audience=raw.get("audience",
                                                "resident"), category=None, urgent=False, page=None, inbox={},
                                                wechat=None, alipay=None, sms=None, when=raw["when"], silent=True)
                continue
            t = Template(
                key=path.stem, topic=raw["topic"], audience=raw.get("audience", "resident"),
                category=raw.get("category"), urgent=bool(raw.get("urgent", False)), page=raw.get("page"),
                inbox=raw["inbox"], wechat=raw.get("wechat"), alipay=raw.get("alipay"), sms=raw.get("sms"),
                when=raw.get("when") or {},
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TemplateError(f"{path}: {exc}") from None
        problem = _check(t, categories)
        if problem:
            raise TemplateError(f"{path}: {problem}")
        templates[t.key] = t
    for topic in {t.topic for t in templates.values()}:
        defaults = [t.key for t in templates.values() if t.topic == topic and not t.when]
        if len(defaults) > 1:
            raise TemplateError(f"{base}: {topic!r} has more than one template without `when`: {defaults}")
    return Catalogue(templates=templates, categories=categories)


def _literal(text: Any) -> bool:
    """A value with no placeholder: what it says is sent as it is, so it must fit as it is."""
    return isinstance(text, str) and "{" not in text


def _check(t: Template, categories: dict[str, Category]) -> str | None:
    """What is wrong with a template, found when it is loaded rather than when a platform refuses a message."""
    if t.audience not in ("resident", "staff"):
        return f"unknown audience {t.audience!r}"
    shapes: dict[str, Any] = {"inbox": t.inbox, "when": t.when, "page": t.page or {}, "wechat": t.wechat or {},
                              "alipay": t.alipay or {}, "sms": t.sms or {}}
    for name, part in shapes.items():
        if not isinstance(part, dict):
            return f"{name} is not an object"
    for name in ("wechat", "alipay", "sms"):
        inner = shapes[name].get("params" if name == "sms" else "data", {})
        if not isinstance(inner, dict) or not all(isinstance(v, str) for v in inner.values()):
            return f"{name} fields are not texts by name"
    if t.audience == "resident" and t.category not in categories:
        return f"unknown category {t.category!r}"
    if not (isinstance(t.inbox.get("title"), str) and isinstance(t.inbox.get("body"), str)):
        return "the inbox entry needs a title and a body"
    if _literal(t.inbox["title"]) and len(t.inbox["title"]) > INBOX_TITLE_LIMIT:
        return f"inbox title longer than {INBOX_TITLE_LIMIT} characters"
    for key, values in t.when.items():
        if not _WHEN.match(key) or not isinstance(values, list):
            return f"`when` condition {key!r} is not `<field>_in` or `<field>_not_in` with a list"
    if t.page is not None:
        if not isinstance(t.page.get("path"), str):
            return "page without a path"
        if "id" in t.page and t.page.get("kind") not in qr.KINDS:
            return f"page kind {t.page.get('kind')!r} is not a QR token kind"
    if t.wechat is not None:
        if not t.wechat.get("template_id") or not t.wechat.get("data"):
            return "WeChat needs a template_id and data"
        for key, text in t.wechat["data"].items():
            if _kind(key) not in WECHAT_LIMITS:
                return f"WeChat field {key!r} has no known kind"
            if _literal(text) and wechat_value(key, text) != text:
                return f"WeChat field {key!r} cannot carry {text!r} as it is (too long or wrong characters)"
    if t.alipay is not None:
        if not t.alipay.get("template_id") or not t.alipay.get("data"):
            return "Alipay needs a template_id and data"
        for key, text in t.alipay["data"].items():
            if not _ALIPAY_FIELD.match(key):
                return f"Alipay field {key!r} is not keywordN"
            if _literal(text) and len(text) > ALIPAY_LIMIT:
                return f"Alipay field {key!r} longer than {ALIPAY_LIMIT} characters"
    if t.sms is not None:
        if not _SMS_CODE.match(str(t.sms.get("template_code", ""))):
            return f"SMS template_code {t.sms.get('template_code')!r} is not SMS_..."
        for key, text in (t.sms.get("params") or {}).items():
            if not _SMS_PARAM.match(key):
                return f"SMS variable {key!r} is not a variable name"
            if _literal(text) and len(text) > SMS_PARAM_LIMIT:
                return f"SMS variable {key!r} longer than {SMS_PARAM_LIMIT} characters"
    return None


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
    """The mini-program page with a signed token: a raw id in a link would let anyone walk the ids.

    A page may add public parameters (`query`), such as the hall and item a rebooking page opens on.
    """
    if not template.page:
        return None
    path = template.page["path"]
    params: dict[str, str] = {}
    raw_id = fill(template.page.get("id", ""), values)
    if raw_id.isdigit():
        params["token"] = qr.make_token(secret, template.page["kind"], int(raw_id))
    for name, text in (template.page.get("query") or {}).items():
        value = fill(text, values)
        if value:
            params[name] = value
    return f"{path}?{urlencode(params)}" if params else path


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
