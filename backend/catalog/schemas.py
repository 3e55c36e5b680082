"""Catalog schemas: the import row of a service item (事项), and the guide and hall answers.

Import rows
-----------
`ItemIn` is one row of `palmhall catalog import`, the same in JSON and CSV, and what
`palmhall catalog export` writes. In JSON a file is a list of rows or ``{"items": [rows]}``.
In CSV (UTF-8, with or without BOM, one header row naming the fields below) the list fields
``materials``, ``fees``, ``channels`` and ``halls`` carry JSON in their cells, e.g.
``[{"name": "居民身份证", "form": "original", "certificate_type": "居民身份证"}]`` and
``["counter", "mini_program"]``; an empty cell means the field's default.

Money is integer fen everywhere: ``amount_fen: 1250`` is 12.50 元. Yuan strings ("12.50") and
numbers with a fraction are refused, never rounded.

Which fields make a new version: the guide (name, department, subject type, legal basis, conditions,
materials, time limits, fees, channels, online depth, issued certificate) is versioned, and a change
to it creates a new version; ``keywords``, ``queue_group``, ``halls`` and ``active`` belong to the
item and change in place. ``effective_from`` defaults to today (Asia/Shanghai) for a new version;
naming a different date than the current version's also makes a new version.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from backend import clock
from backend.bounds import Day, Id32, Input
from backend.catalog import hours
from backend.catalog.codes import validate_item_code
from backend.catalog.hours import Span
from backend.catalog.models import SubjectType
from backend.errors import InvalidValue


class MaterialForm(StrEnum):
    ORIGINAL = "original"  # 原件
    COPY = "copy"  # 复印件
    ELECTRONIC = "electronic"  # 电子件


class Channel(StrEnum):
    MINI_PROGRAM = "mini_program"
    KIOSK = "kiosk"
    COUNTER = "counter"


SUBJECT_LABELS = {SubjectType.PERSON: "自然人", SubjectType.LEGAL_ENTITY: "法人"}
FORM_LABELS = {MaterialForm.ORIGINAL: "原件", MaterialForm.COPY: "复印件", MaterialForm.ELECTRONIC: "电子件"}
CHANNEL_LABELS = {Channel.MINI_PROGRAM: "小程序", Channel.KIOSK: "自助终端", Channel.COUNTER: "窗口"}
# 网上办理深度 as the provincial service networks grade it.
DEPTH_LABELS = {1: "网上可查", 2: "在线预约、表格下载", 3: "网上申请、在线预审", 4: "全程网办"}
WEEKDAY_LABELS = ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"]

MAX_FEN = 10**10  # 1亿元: anything larger is a typo, not a township fee
_MATERIAL_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_HALL_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def today() -> date:
    """Today in Asia/Shanghai: an effective date is a local calendar day."""
    return clock.now().astimezone(clock.SHANGHAI).date()


def _choice(value: Any, allowed: type[StrEnum], code: str, what: str) -> Any:
    if isinstance(value, str) and value.strip() in {m.value for m in allowed}:
        return value.strip()
    if isinstance(value, allowed):
        return value
    options = "、".join(m.value for m in allowed)
    raise InvalidValue(code, f"{what}应为以下之一：{options}")


def _json_cell(value: Any) -> Any:
    """CSV cells carry lists as JSON; a JSON import passes lists straight through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return []
    try:
        parsed = json.loads(text)
    except ValueError:
        raise InvalidValue("csv.json_cell", "应为 JSON 列表，例如 [\"counter\"]") from None
    if not isinstance(parsed, list):
        raise InvalidValue("csv.json_cell", "应为 JSON 列表，例如 [\"counter\"]")
    return parsed


def fen_display(amount_fen: int) -> str:
    """1250 -> "12.50元": integer arithmetic, so no float ever rounds a fee."""
    return f"{amount_fen // 100}.{amount_fen % 100:02d}元"


class _In(Input):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Material(_In):
    """A material to submit: what, in which form, how many copies, and the e-certificate that may replace it."""

    # Stable within the item so cases can name a missing material; filled as M01, M02… when absent.
    code: str | None = Field(default=None, description="材料编号，事项内唯一；缺省时按顺序生成 M01、M02…")
    name: str = Field(min_length=1, max_length=100, description="材料名称")
    form: MaterialForm = Field(default=MaterialForm.ORIGINAL,
                               description="original 原件 / copy 复印件 / electronic 电子件")
    copies: int = Field(default=1, ge=0, le=99, description="份数")
    required: bool = Field(default=True, description="是否必须提交")
    certificate_type: str | None = Field(
        default=None, max_length=64, description="可替代本材料的电子证照类型，如“居民身份证”；提供该证照即免交"
    )
    note: str = Field(default="", max_length=500, description="材料要求说明")

    @field_validator("code")
    @classmethod
    def _code(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not _MATERIAL_CODE.match(v):
            raise InvalidValue("material.code", "材料编号只能包含字母、数字、下划线和短横线，最长32位")
        return v

    @field_validator("form", mode="before")
    @classmethod
    def _form(cls, v: Any) -> Any:
        return _choice(v, MaterialForm, "material.form", "材料形式")

    @field_validator("certificate_type", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v


class Fee(_In):
    """A fee: its name, its legal basis (收费依据) and the amount in integer fen."""

    name: str = Field(min_length=1, max_length=100, description="收费项目")
    basis: str = Field(default="", max_length=1000, description="收费依据")
    amount_fen: int = Field(ge=0, le=MAX_FEN, description="金额，单位：分（整数）；1250 即 12.50 元")

    @field_validator("amount_fen", mode="before")
    @classmethod
    def _integer_fen(cls, v: Any) -> Any:
        # Strict on purpose: "12.50" or 12.5 is most likely yuan, and guessing would misstate a fee 100-fold.
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidValue("fee.amount_fen", "金额应为以分为单位的整数，例如 1250 表示 12.50 元")
        return v


class ItemIn(_In):
    """One service item as imported and exported (see the module docstring for CSV)."""

    code: str = Field(description="实施编码：18位实施机构统一社会信用代码 + 10至22位事项基本编码数字")
    name: str = Field(min_length=1, max_length=200, description="事项名称")
    department: str = Field(min_length=1, max_length=100, description="实施部门")
    subject_type: SubjectType = Field(description="服务对象：person 自然人 / legal_entity 法人")
    keywords: str = Field(default="", max_length=500, description="检索关键词，空格分隔")
    queue_group: str = Field(default="A", description="取号队列字母，如 A")
    legal_basis: str = Field(default="", max_length=20000, description="设定依据")
    conditions: str = Field(default="", max_length=20000, description="受理条件")
    materials: list[Material] = Field(default_factory=list, max_length=100, description="申请材料")
    statutory_days: int = Field(ge=0, le=999, description="法定办结时限，工作日；0 为即办")
    promised_days: int = Field(ge=0, le=999, description="承诺办结时限，工作日；0 为即办；不超过法定时限")
    fees: list[Fee] = Field(default_factory=list, max_length=50, description="收费项目；不收费为空列表")
    channels: list[Channel] = Field(min_length=1,
                                    description="办理渠道：mini_program 小程序 / kiosk 自助终端 / counter 窗口")
    online_depth: int = Field(default=1, ge=1, le=4, description="网上办理深度：1 网上可查 … 4 全程网办")
    certificate_type: str | None = Field(default=None, max_length=64, description="办结后签发的电子证照类型")
    halls: list[str] = Field(default_factory=list, max_length=500, description="可办理的服务大厅编码，如 HX-01")
    effective_from: Day | None = Field(default=None, description="本版本生效日期，缺省为导入当天")
    active: bool = Field(default=True, description="是否在办；停办事项不再出现在检索中")

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        return validate_item_code(v)

    @field_validator("subject_type", mode="before")
    @classmethod
    def _subject(cls, v: Any) -> Any:
        return _choice(v, SubjectType, "item.subject_type", "服务对象")

    @field_validator("queue_group", mode="before")
    @classmethod
    def _queue_group(cls, v: Any) -> Any:
        if isinstance(v, str) and re.fullmatch(r"[A-Za-z]", v.strip()):
            return v.strip().upper()
        raise InvalidValue("item.queue_group", "取号队列应为一个英文字母，如 A")

    @field_validator("materials", "fees", "channels", "halls", mode="before")
    @classmethod
    def _lists_from_csv(cls, v: Any) -> Any:
        return _json_cell(v)

    @field_validator("materials")
    @classmethod
    def _material_codes(cls, v: list[Material]) -> list[Material]:
        taken = {m.code for m in v if m.code}
        seen: set[str] = set()
        n = 0
        for m in v:
            if m.code is None:
                n += 1
                while f"M{n:02d}" in taken:
                    n += 1
                m.code = f"M{n:02d}"
                taken.add(m.code)
            if m.code in seen:
                raise InvalidValue("material.duplicate_code", f"材料编号 {m.code} 重复")
            seen.add(m.code)
        return v

    @field_validator("promised_days")
    @classmethod
    def _promise_within_law(cls, v: int, info: ValidationInfo) -> int:
        statutory = info.data.get("statutory_days")
        if statutory is not None and v > statutory:
            raise InvalidValue("item.promised_days", f"承诺时限（{v}个工作日）不能超过法定时限（{statutory}个工作日）")
        return v

    @field_validator("channels", mode="before")
    @classmethod
    def _channel_values(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [_choice(c, Channel, "item.channel", "办理渠道") for c in v]
        return v

    @field_validator("channels")
    @classmethod
    def _channel_order(cls, v: list[Channel]) -> list[Channel]:
        # A set in a fixed order: ["counter", "kiosk"] and ["kiosk", "counter"] are the same guide.
        return [c for c in Channel if c in v]

    @field_validator("online_depth")
    @classmethod
    def _depth_needs_channel(cls, v: int, info: ValidationInfo) -> int:
        channels = info.data.get("channels")
        if v == 4 and channels is not None and Channel.MINI_PROGRAM not in channels:
            raise InvalidValue("item.online_depth", "全程网办（深度4）的事项应开通小程序渠道")
        return v

    @field_validator("certificate_type", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("halls")
    @classmethod
    def _hall_codes(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not _HALL_CODE.match(c)]
        if bad:
            raise InvalidValue("item.hall_code", f"服务大厅编码格式不正确：{'、'.join(bad)}")
        return sorted(set(v))

    @field_validator("effective_from")
    @classmethod
    def _not_in_future(cls, v: date | None) -> date | None:
        # A guide must not be handed to cases before it is in force; publishing ahead is not supported yet.
        if v is not None and v > today():
            raise InvalidValue("item.effective_in_future", "生效日期不能晚于今天（暂不支持预先发布）")
        return v


# ---- answers ---------------------------------------------------------------------------------


class MaterialOut(Material):
    code: str
    form_label: str


class FeeOut(BaseModel):
    name: str
    basis: str
    amount_fen: int
    amount_display: str = Field(description="如“12.50元”")


class HallRef(BaseModel):
    id: int
    code: str
    name: str
    address: str


class ItemSummary(BaseModel):
    code: str
    name: str
    department: str
    subject_type: SubjectType
    online_depth: int
    channels: list[Channel]
    has_fees: bool = Field(description="是否有金额大于零的收费项目")
    promised_days: int


class ItemPage(BaseModel):
    items: list[ItemSummary]
    total: int
    page: int
    page_size: int


class Guide(BaseModel):
    """The full guide (办事指南) of one version of an item."""

    code: str
    name: str
    department: str
    subject_type: SubjectType
    subject_type_label: str
    keywords: str
    legal_basis: str
    conditions: str
    materials: list[MaterialOut]
    fees: list[FeeOut]
    has_fees: bool
    statutory_days: int
    promised_days: int
    statutory_display: str = Field(description="如“20个工作日”或“即办”")
    promised_display: str
    channels: list[Channel]
    channel_labels: list[str]
    online_depth: int
    online_depth_label: str
    certificate_type: str | None
    queue_group: str
    halls: list[HallRef]
    version: int
    current_version: int
    effective_from: date
    active: bool


class CounterOut(BaseModel):
    id: int
    number: int
    name: str
    groups: list[str]


class Period(BaseModel):
    opens: str = Field(description="HH:MM")
    closes: str = Field(description="HH:MM")


class DayHours(BaseModel):
    weekday: int = Field(description="0 = 星期一")
    weekday_label: str
    periods: list[Period]


class HallOut(BaseModel):
    id: int
    code: str
    name: str
    region_code: str
    address: str
    counters: list[CounterOut]
    opening_hours: list[DayHours] = Field(description="每周营业时间（北京时间），未列出的日子不营业")


class HallList(BaseModel):
    halls: list[HallOut]


# ---- queries -----------------------------------------------------------------------------------


class SearchQuery(Input):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    q: str | None = Field(default=None, max_length=50, description="关键词（中文），空格分隔的词都须出现")
    department: str | None = Field(default=None, max_length=100)
    subject_type: SubjectType | None = None
    hall: Id32 | None = Field(default=None, description="服务大厅 id")
    page: int = Field(default=1, ge=1, le=10000)
    page_size: int = Field(default=20, ge=1, le=100)

    @field_validator("q", "department", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("subject_type", mode="before")
    @classmethod
    def _subject(cls, v: Any) -> Any:
        if v in (None, ""):
            return None
        return _choice(v, SubjectType, "item.subject_type", "服务对象")


class GuideQuery(Input):
    model_config = ConfigDict(extra="ignore")

    version: Id32 | None = Field(default=None, description="版本号，缺省为当前版本")


# ---- setting a hall up (staff API and `palmhall hall`) ----------------------------------------

_QUEUE_GROUP = re.compile(r"^[A-Z]$")


def validate_region(value: str) -> str:
    """A GB/T 2260 county code, or one plus the GB/T 10114 township digits: ASCII digits only (it starts every
    case number), and a county the region table knows."""
    from backend.identity import regions

    code = unicodedata.normalize("NFKC", value).strip()
    if not re.fullmatch(r"[0-9]{6}(?:[0-9]{3})?", code):
        raise InvalidValue("hall.region_format", "区划代码应为6位（县级）或9位（乡镇级）数字")
    if not regions.is_known(code[:6]):
        raise InvalidValue("hall.region_unknown", "区划代码的前6位不是有效的县级以上行政区划代码（GB/T 2260）")
    return code


def validate_hall_code(value: str) -> str:
    if not _HALL_CODE.match(value):
        raise InvalidValue("hall.code_format", "大厅编码只能包含字母、数字、下划线和短横线，最长32位，如 HX-02")
    return value


def validate_groups(value: list[str]) -> list[str]:
    """Queue group letters, upper-cased, each once, in order."""
    letters = [g.strip().upper() for g in value]
    bad = [g for g in letters if not _QUEUE_GROUP.match(g)]
    if bad:
        raise InvalidValue("counter.group", f"业务类别应为一个英文字母，如 A：{'、'.join(bad)}")
    return sorted(set(letters))


class HallIn(_In):
    """A new hall (admins only)."""

    code: str = Field(min_length=1, max_length=32, description="大厅编码，如 HX-02（用于命令行和二维码）")
    name: str = Field(min_length=1, max_length=100, description="大厅名称")
    region_code: str = Field(min_length=6, max_length=9, description="区划代码：6位县级或9位乡镇级")
    address: str = Field(default="", max_length=200, description="地址")

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        return validate_hall_code(v)

    @field_validator("region_code")
    @classmethod
    def _region(cls, v: str) -> str:
        return validate_region(v)


class HallChange(_In):
    """A hall's name, address or region code; fields not given keep their values."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    address: str | None = Field(default=None, max_length=200)
    region_code: str | None = Field(default=None, min_length=6, max_length=9,
                                    description="区划代码（仅系统管理员可改；此后新办件的编号随之改变）")

    @field_validator("region_code")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        return None if v is None else validate_region(v)


class CounterIn(_In):
    """A new counter (窗口) and what it serves: queue groups, or items (which stand for their queue groups)."""

    number: int = Field(ge=1, le=999, description="窗口号，叫号时播报“N号窗口”，本厅内唯一")
    name: str = Field(min_length=1, max_length=64, description="窗口名称，如“综合受理1号窗口”")
    groups: list[str] = Field(default_factory=list, max_length=26,
                              description="办理的业务类别（取号字母），如 [\"A\", \"B\"]")
    items: list[str] = Field(default_factory=list, max_length=500,
                             description="办理的事项编码（本厅开办的），按其取号字母并入 groups")

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        return validate_groups(v)


class CounterChange(_In):
    """Rename, renumber, change what it serves, close (active=false) or reopen a counter; fields not given keep
    their values. `groups` or `items` given replace what the counter serves."""

    number: int | None = Field(default=None, ge=1, le=999)
    name: str | None = Field(default=None, min_length=1, max_length=64)
    groups: list[str] | None = Field(default=None, max_length=26)
    items: list[str] | None = Field(default=None, max_length=500)
    active: bool | None = Field(default=None, description="false 关闭窗口（不再叫号、不再显示），true 重新启用")

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else validate_groups(v)


class HallItemsIn(_In):
    """The items the hall offers: the whole list (items left out are no longer offered here)."""

    items: list[str] = Field(max_length=500, description="事项编码（实施编码）列表")


class PeriodIn(_In):
    """One opening period of a day, Asia/Shanghai time, e.g. 09:00–12:00."""

    opens: str = Field(max_length=5, description="开始时间 HH:MM")
    closes: str = Field(max_length=5, description="结束时间 HH:MM，晚于开始时间")

    @model_validator(mode="after")
    def _span(self) -> PeriodIn:
        hours.span(self.opens, self.closes)  # refuses either time, or closing before opening, in Chinese
        return self

    def span(self) -> Span:
        return hours.span(self.opens, self.closes)


def _day_periods(v: list[PeriodIn]) -> list[PeriodIn]:
    hours.check_day(p.span() for p in v)  # overlapping periods, too many of them
    return v


class DayHoursIn(_In):
    weekday: int = Field(ge=0, le=6, description="0 = 星期一 … 6 = 星期日")
    periods: list[PeriodIn] = Field(max_length=6, description="当天的办公时段，如上午、下午各一段（午休不列）")

    @field_validator("periods")
    @classmethod
    def _periods(cls, v: list[PeriodIn]) -> list[PeriodIn]:
        return _day_periods(v)


class WeekIn(_In):
    """The hall's weekly hours: every weekday it opens, with its periods; weekdays not listed are closed.
    Official holidays close the hall whatever the week says; a 调休 Saturday or Sunday without hours of its own
    works as a Monday."""

    days: list[DayHoursIn] = Field(max_length=7)

    @field_validator("days")
    @classmethod
    def _once_each(cls, v: list[DayHoursIn]) -> list[DayHoursIn]:
        seen = [d.weekday for d in v]
        twice = sorted({w for w in seen if seen.count(w) > 1})
        if twice:
            raise InvalidValue("hours.duplicate_weekday",
                               f"{'、'.join(WEEKDAY_LABELS[w] for w in twice)}重复出现，每个星期几只能列一次")
        return v

    def week(self) -> dict[int, list[Span]]:
        return {d.weekday: [p.span() for p in d.periods] for d in self.days}


class SpecialHoursIn(_In):
    """The hall's hours on one date in place of its weekly hours: shorter hours, or none (closed that day)."""

    periods: list[PeriodIn] = Field(max_length=6, description="当天的办公时段；空列表表示当天不办公")
    reason: str = Field(min_length=1, max_length=200, description="调整原因，如“下午参加防汛演练”")

    @field_validator("periods")
    @classmethod
    def _periods(cls, v: list[PeriodIn]) -> list[PeriodIn]:
        return _day_periods(v)


class ClosedPeriodIn(_In):
    """A closed part of a day, e.g. 14:00–17:00."""

    start: str = Field(max_length=5, description="闭厅开始时间 HH:MM")
    end: str = Field(max_length=5, description="闭厅结束时间 HH:MM，晚于开始时间")

    @model_validator(mode="after")
    def _span(self) -> ClosedPeriodIn:
        hours.span(self.start, self.end)
        return self

    def span(self) -> Span:
        return hours.span(self.start, self.end)


class ClosureIn(_In):
    """Close the hall for the whole day, or (with `periods`) for parts of it."""

    reason: str = Field(min_length=1, max_length=200, description="闭厅原因，如“系统升级停办”")
    periods: list[ClosedPeriodIn] | None = Field(
        default=None, max_length=6,
        description="只闭厅一天中的这些时段，如 [{\"start\": \"14:00\", \"end\": \"17:00\"}]；缺省为全天闭厅")

    @field_validator("periods")
    @classmethod
    def _periods(cls, v: list[ClosedPeriodIn] | None) -> list[ClosedPeriodIn] | None:
        if v is not None:
            hours.check_day(p.span() for p in v)
        return v or None

    def spans(self) -> list[Span] | None:
        return None if self.periods is None else [p.span() for p in self.periods]
