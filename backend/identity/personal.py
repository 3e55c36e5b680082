"""Resident ID numbers (GB 11643), mobile numbers and the masks public answers use."""

from __future__ import annotations

import re
from datetime import date

from backend.errors import InvalidValue

_ID = re.compile(r"^\d{17}[\dX]$")
_PHONE = re.compile(r"^1[3-9]\d{9}$")
_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
_CHECK = "10X98765432"  # index: sum mod 11 -> check character, i.e. (12 - s) mod 11 with 10 = X


def id_check_char(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def validate_id_number(value: str, *, today: date | None = None) -> str:
    """Normalized 18-character ID number, or InvalidValue with a Chinese reason (never the number)."""
    v = value.strip().upper()
    if not _ID.match(v):
        raise InvalidValue("id_number.format", "身份证号码应为18位，前17位为数字，最后一位为数字或X")
    try:
        birth = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        raise InvalidValue("id_number.birth_date", "身份证号码中的出生日期无效") from None
    if birth > (today or date.today()) or birth.year < 1900:
        raise InvalidValue("id_number.birth_date", "身份证号码中的出生日期无效")
    if id_check_char(v[:17]) != v[17]:
        raise InvalidValue("id_number.checksum", "身份证号码校验位不正确")
    return v


def validate_phone(value: str) -> str:
    v = re.sub(r"[\s-]", "", value)
    if v.startswith("+86"):
        v = v[3:]
    if not _PHONE.match(v):
        raise InvalidValue("phone.format", "手机号码应为11位中国大陆手机号")
    return v


def validate_name(value: str) -> str:
    v = value.strip()
    if not 2 <= len(v) <= 30 or not re.fullmatch(r"[\u4e00-\u9fff·A-Za-z\s]+", v):
        raise InvalidValue("name.format", "姓名应为2至30个汉字或字母")
    return v


def mask_name(name: str) -> str:
    """张三 -> 张*, 张三丰 -> 张*丰, 欧阳娜娜 -> 欧**娜."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_id_number(v: str) -> str:
    return v[:4] + "*" * (len(v) - 8) + v[-4:]


def mask_phone(v: str) -> str:
    return v[:3] + "****" + v[-4:]
