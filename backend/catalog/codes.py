"""Unified social credit codes (GB 32100) and the implementation codes (实施编码) that embed them.

Pure functions with no I/O, so property tests can drive them directly.

Implementation code (实施编码) as palmhall accepts it
-------------------------------------------------------
The national platform's coding standard (GB/T 39554.1-2020, and provincial rules before it such as
DB22/T 2848-2017) builds an implementation code from the implementing agency's unified social
credit code followed by the item's basic code (基本编码: item type, main item, sub item; provinces
add digits for the exercising level or the handling item). Provinces differ in the length and
meaning of that tail, so we check what is common to all of them and stable:

    ``<18-character unified social credit code><10 to 22 digits>``   (28 to 40 characters)

* the first 18 characters are the implementing agency's unified social credit code: characters from
  ``0123456789ABCDEFGHJKLMNPQRTUWXY`` (no I, O, Z, S, V) whose 18th is the GB 32100 check character;
* the rest are the basic-code digits (their own structure is not checked).

Letters are upper-cased and surrounding spaces removed before checking; nothing else is corrected.
40 is the width of ``ServiceItem.code``.
"""

from __future__ import annotations

from backend.errors import InvalidValue

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}

USCC_LENGTH = 18
BASIC_CODE_MIN = 10
BASIC_CODE_MAX = 22
ITEM_CODE_MIN = USCC_LENGTH + BASIC_CODE_MIN
ITEM_CODE_MAX = USCC_LENGTH + BASIC_CODE_MAX


def uscc_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters (which must be in the alphabet)."""
    if len(first17) != USCC_LENGTH - 1:
        raise ValueError("need exactly 17 characters")
    total = sum(_VALUE[c] * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    # 31 − (Σ mod 31), where 31 itself is written as 0: the same as (−Σ) mod 31.
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    return (
        len(code) == USCC_LENGTH
        and all(c in _VALUE for c in code)
        and uscc_check_char(code[:17]) == code[17]
    )


def uscc_problem(code: str) -> tuple[str, str] | None:
    """Why `code` is not a valid unified social credit code, as (stable code, Chinese message)."""
    if len(code) != USCC_LENGTH:
        return "uscc.length", "统一社会信用代码应为18位"
    bad = sorted({c for c in code if c not in _VALUE})
    if bad:
        return "uscc.alphabet", (f"统一社会信用代码含有不允许的字符：{'、'.join(bad)}"
                                 "（只用数字和大写字母，不用 I、O、Z、S、V）")
    if uscc_check_char(code[:17]) != code[17]:
        return "uscc.check", "统一社会信用代码校验位不正确"
    return None


def validate_uscc(value: str) -> str:
    """Normalized code, or InvalidValue with a Chinese reason."""
    code = value.strip().upper()
    problem = uscc_problem(code)
    if problem:
        raise InvalidValue(*problem)
    return code


def validate_item_code(value: str) -> str:
    """Normalized implementation code (实施编码), or InvalidValue naming what is wrong."""
    code = value.strip().upper()
    if not ITEM_CODE_MIN <= len(code) <= ITEM_CODE_MAX:
        raise InvalidValue(
            "item_code.length",
            f"实施编码应为{ITEM_CODE_MIN}至{ITEM_CODE_MAX}位：18位实施机构统一社会信用代码"
            f"加{BASIC_CODE_MIN}至{BASIC_CODE_MAX}位事项基本编码数字（当前{len(code)}位）",
        )
    problem = uscc_problem(code[:USCC_LENGTH])
    if problem:
        kind, message = problem
        raise InvalidValue("item_code." + kind.split(".", 1)[1], "实施编码前18位（实施机构）" + message)
    if not code[USCC_LENGTH:].isascii() or not code[USCC_LENGTH:].isdigit():
        raise InvalidValue("item_code.basic_code", "实施编码第19位起应全部为数字（事项基本编码）")
    return code


def make_uscc(first17: str) -> str:
    """Complete 17 characters with their check character (demo data, tests)."""
    return first17 + uscc_check_char(first17)


def make_item_code(uscc: str, basic_code: str) -> str:
    """An implementation code from an agency's code and the item's basic code; validated."""
    return validate_item_code(uscc + basic_code)
