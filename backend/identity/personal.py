"""Resident ID numbers (GB 11643), mobile numbers, the one normal form each is hashed in, and the masks
public answers use.

A person must have one keyed hash (`backend.crypto.blind_index`), so every value is brought to one normal
form before it is hashed, stored or compared: Unicode NFKC (full-width `１` and `Ｘ` become `1` and `X`),
surrounding spaces removed, then checked with ASCII-only patterns. Digits NFKC leaves alone (Arabic-Indic
`١`, Devanagari `१`...) are refused: Python's `\\d` and `int()` accept them, which is how one person could
become two.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

from cryptography.exceptions import InvalidTag
from pydantic import AfterValidator, Field

from backend import clock
from backend.crypto import KeyError_, KeyRing
from backend.errors import InvalidValue
from backend.identity import regions

# Explicit ASCII classes (never \d, which matches every Unicode decimal digit).
_ID = re.compile(r"[0-9]{17}[0-9X]")
_PHONE = re.compile(r"1[3-9][0-9]{9}")
_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
_CHECK = "10X98765432"  # index: sum mod 11 -> check character, i.e. (12 - s) mod 11 with 10 = X
_ASCII_DIGITS = "0123456789"
EARLIEST_BIRTH = date(1900, 1, 1)  # nobody older holds a card; earlier dates are typing mistakes

ID_FORMAT_MESSAGE = "身份证号码应为18位，前17位为数字，最后一位为数字或X"


def ascii_form(value: str) -> str:
    """NFKC with surrounding white space removed: the first step of every code's normal form."""
    return unicodedata.normalize("NFKC", value).strip()


def id_check_char(first17: str) -> str:
    if len(first17) != 17 or any(c not in _ASCII_DIGITS for c in first17):
        raise ValueError("need exactly 17 ASCII digits")
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def normalize_id_number(value: str) -> str:
    """The normal form an ID number is stored and hashed in (NFKC, stripped, `x` -> `X`), unchecked."""
    return ascii_form(value).replace("x", "X")


def validate_id_number(value: str, *, today: date | None = None) -> str:
    """Normalized 18-character ID number, or InvalidValue with a Chinese reason (never the number)."""
    v = normalize_id_number(value)
    if not _ID.fullmatch(v):
        raise InvalidValue("id_number.format", ID_FORMAT_MESSAGE)
    if not regions.is_known(v[:6]):
        raise InvalidValue("id_number.region", "身份证号码前6位不是有效的行政区划代码")
    try:
        birth = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        raise InvalidValue("id_number.birth_date", "身份证号码中的出生日期无效") from None
    if not EARLIEST_BIRTH <= birth <= (today or clock.now().astimezone(clock.SHANGHAI).date()):
        raise InvalidValue("id_number.birth_date", "身份证号码中的出生日期无效")
    if id_check_char(v[:17]) != v[17]:
        raise InvalidValue("id_number.checksum", "身份证号码校验位不正确")
    return v


def normalize_phone(value: str) -> str:
    """The normal form a mobile number is stored and hashed in: NFKC, no spaces or hyphens, no +86."""
    v = re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", value))
    for prefix in ("+86", "0086"):
        if v.startswith(prefix):
            return v[len(prefix):]
    return v


def validate_phone(value: str) -> str:
    v = normalize_phone(value)
    if not _PHONE.fullmatch(v):
        raise InvalidValue("phone.format", "手机号码应为11位中国大陆手机号")
    return v


def validate_name(value: str) -> str:
    v = value.strip()
    if not 2 <= len(v) <= 30 or not re.fullmatch(r"[\u4e00-\u9fff·A-Za-z\s]+", v):
        raise InvalidValue("name.format", "姓名应为2至30个汉字或字母")
    return v


def _id_number(value: str) -> str:
    return validate_id_number(value)


# The one way an ID number or a mobile number enters palmhall, whichever the surface (mini program, kiosk,
# counter, imports): use these types in every schema that takes one. The length bounds only stop absurd
# input early; the validators decide.
IdNumber = Annotated[str, Field(max_length=32, description="18位居民身份证号码（GB 11643），全角数字会转为半角"),
                     AfterValidator(_id_number)]
Phone = Annotated[str, Field(max_length=32, description="11位中国大陆手机号码"), AfterValidator(validate_phone)]


# ---- stored values, read back for the check (`palmhall identity check-ids`) ---------------------


Kind = Literal["id_number", "phone"]  # also the `kind` of their keyed hash (blind_index)


@dataclass(frozen=True)
class StoredIdentifier:
    """An ID number or mobile number as one table row keeps it. The owning package reads its rows back
    (it knows the column and its AAD); `backend.identity.idcheck` compares them."""

    table: str
    row_id: int
    field: str  # the column, e.g. "id_number_enc"
    kind: Kind
    value: str | None  # decrypted; None when the row keeps only the hash, or could not be decrypted
    hash: str | None  # the keyed hash kept beside it, if any
    unreadable: str = ""  # why the value could not be decrypted (never any of the data)


def read_stored(keyring: KeyRing, token: str, *, aad: str, table: str, row_id: int, field: str, kind: Kind,
                hash: str | None) -> StoredIdentifier:
    try:
        value, why = keyring.decrypt(token, aad=aad), ""
    except KeyError_ as exc:
        value, why = None, str(exc)
    except InvalidTag:
        value, why = None, "cannot decrypt: another key or another column's ciphertext"
    except ValueError:  # not base64, not three parts, not UTF-8
        value, why = None, "cannot decrypt: not a ciphertext"
    return StoredIdentifier(table=table, row_id=row_id, field=field, kind=kind, value=value, hash=hash,
                            unreadable=why)


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
