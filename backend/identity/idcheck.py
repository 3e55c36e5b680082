"""Stored ID numbers and phones that are not in their normal form, and people split across keyed hashes.

Before every value went through one normal form (`backend.identity.personal`), the same person's number typed
with full-width or other non-ASCII digits was stored as typed and hashed as typed, so it could become a
second identity. `palmhall identity check-ids` (and every `palmhall migrate`) reads back every table that keeps
an ID number or a phone, and reports by table and row id, with numbers masked:

- each row whose stored value differs from its normal form, cannot be decrypted, is refused by today's
  validator, or whose keyed hash belongs to neither form;
- each group of rows that are one person once normalised but sit under more than one keyed hash (or, for ID
  numbers, in more than one resident).

It only reads: repairing a row (re-keying the appointments and cases that follow its hash, merging two
residents) is a decision for a person with the report in hand.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from backend.booking import service as booking
from backend.cases import service as cases
from backend.crypto import KeyRing, blind_index
from backend.errors import InvalidValue
from backend.identity import service as identity
from backend.identity.personal import (
    Kind,
    StoredIdentifier,
    mask_id_number,
    mask_phone,
    normalize_id_number,
    normalize_phone,
    validate_id_number,
    validate_phone,
)

TABLES = ("resident", "cases", "certificate", "appointment", "booking_bar")


def fold(kind: str, value: str) -> str:
    """The person's normal form of any stored spelling. Wider than the validators, which refuse what they
    cannot read unambiguously: here every Unicode decimal digit counts as its ASCII digit and inner spaces
    are dropped, so that every spelling of one number meets the others."""
    v = unicodedata.normalize("NFKC", value)
    v = "".join(c if c.isascii() or unicodedata.decimal(c, None) is None else str(unicodedata.decimal(c)) for c in v)
    v = re.sub(r"\s", "", v)
    return normalize_id_number(v) if kind == "id_number" else normalize_phone(v)


def _differences(kind: str, value: str) -> str:
    """What makes a stored value differ from its normal form, in words that name no digit of it."""
    def folds_to(c: str) -> str:
        return unicodedata.normalize("NFKC", c)

    odd = [c for c in value if not c.isascii() and not c.isspace()]
    found = []
    if any(unicodedata.decimal(c, None) is not None or folds_to(c).isdigit() for c in odd):
        found.append("non-ASCII digits")
    if any(folds_to(c).isascii() and folds_to(c).isalpha() for c in odd):
        found.append("full-width letters")
    if any(unicodedata.decimal(c, None) is None and not folds_to(c).isascii() for c in odd):
        found.append("other non-ASCII characters")
    if kind == "id_number" and "x" in value:
        found.append("lowercase x")
    if any(c.isspace() for c in value):
        found.append("spaces")
    if kind == "phone" and any(folds_to(c) in "+-" for c in value):
        found.append("country code or hyphens")
    return ", ".join(found) or "other differences"


def _mask(kind: str, normal: str) -> str:
    if kind == "phone":
        return mask_phone(normal) if len(normal) == 11 else "*" * len(normal)
    return mask_id_number(normal) if len(normal) >= 8 else "*" * len(normal)


def _where(s: StoredIdentifier) -> str:
    return f"{s.table} {s.row_id}"


@dataclass(frozen=True)
class RowFinding:
    stored: StoredIdentifier
    problems: tuple[str, ...]
    masked: str  # the normal form, masked
    keyed_rows: tuple[str, ...] = ()  # hash-only rows that follow this row's hash

    def line(self) -> str:
        s = self.stored
        text = f"{_where(s)} {s.field}: {'; '.join(self.problems)}"
        if self.masked:
            text += f" [normal form {self.masked}]"
        if self.keyed_rows:
            text += f"; rows keyed by the same hash: {', '.join(self.keyed_rows)}"
        return text


@dataclass(frozen=True)
class SplitPerson:
    kind: str
    masked: str
    rows: tuple[str, ...]
    hashes: int
    residents: int

    def line(self) -> str:
        under = [f"{self.hashes} keyed hashes"] if self.hashes > 1 else []
        if self.kind == "id_number" and self.residents > 1:  # residents may share a phone, not an ID number
            under.append(f"{self.residents} residents")
        return f"one person, {self.kind} {self.masked}, under {' and '.join(under)}: {', '.join(self.rows)}"


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)  # rows read, by table
    rows: list[RowFinding] = field(default_factory=list)
    splits: list[SplitPerson] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.rows or self.splits)

    def lines(self) -> list[str]:
        out = [f.line() for f in self.rows] + [s.line() for s in self.splits]
        checked = ", ".join(f"{self.counts[t]} {t} rows" for t in TABLES)
        if not self.found:
            return [*out, f"ID numbers and phones: all in normal form, one keyed hash per person ({checked})"]
        return [*out, f"ID numbers and phones: {len(self.rows)} rows to look at, {len(self.splits)} people under "
                      f"several hashes or residents ({checked}); numbers are masked"]


async def _sources(keyring: KeyRing) -> AsyncIterator[StoredIdentifier]:
    async for s in identity.stored_identifiers(keyring=keyring):
        yield s
    async for s in cases.stored_identifiers(keyring=keyring):
        yield s
    async for s in booking.stored_person_hashes():
        yield s


def _refusal(kind: str, normal: str) -> str | None:
    try:
        validate_id_number(normal) if kind == "id_number" else validate_phone(normal)
    except InvalidValue as exc:
        return f"refused by today's validator ({exc.code})"
    return None


async def check(*, keyring: KeyRing, hash_key: str) -> Report:
    report = Report()
    seen: set[tuple[str, int]] = set()
    readable: list[tuple[StoredIdentifier, str]] = []  # (row, normal form)
    hash_only: list[StoredIdentifier] = []
    async for s in _sources(keyring):
        if (s.table, s.row_id) not in seen:
            seen.add((s.table, s.row_id))
            report.counts[s.table] += 1
        if s.value is not None:
            readable.append((s, fold(s.kind, s.value)))
        elif s.unreadable:
            report.rows.append(RowFinding(stored=s, problems=(s.unreadable,), masked=""))
        elif s.hash is not None:
            hash_only.append(s)

    followers: dict[str, list[StoredIdentifier]] = defaultdict(list)
    for s in hash_only:
        followers[s.hash or ""].append(s)

    groups: dict[tuple[Kind, str], list[StoredIdentifier]] = defaultdict(list)
    group_of_hash: dict[str, tuple[Kind, str]] = {}
    for s, normal in readable:
        key = (s.kind, normal)
        groups[key].append(s)
        if s.hash is not None:
            group_of_hash.setdefault(s.hash, key)
        assert s.value is not None
        problems = []
        if normal != s.value:
            problems.append(f"not in normal form ({_differences(s.kind, s.value)})")
        refusal = _refusal(s.kind, normal)
        if refusal:
            problems.append(refusal)
        if s.hash is not None and s.hash not in (blind_index(hash_key, s.kind, s.value),
                                                 blind_index(hash_key, s.kind, normal)):
            problems.append("its keyed hash is of neither the stored nor the normal form")
        if problems:
            keyed = tuple(_where(f) for f in followers.get(s.hash or "", ())
                          if normal != s.value and f.kind == s.kind)
            report.rows.append(RowFinding(stored=s, problems=tuple(problems), masked=_mask(s.kind, normal),
                                          keyed_rows=keyed))

    for s in hash_only:
        joined = group_of_hash.get(s.hash or "")
        if joined is not None:
            groups[joined].append(s)
    for (kind, normal), members in sorted(groups.items(), key=lambda kv: min(_where(m) for m in kv[1])):
        hashes = {m.hash for m in members if m.hash is not None}
        residents = {m.row_id for m in members if m.table == "resident"}
        if len(hashes) > 1 or (kind == "id_number" and len(residents) > 1):
            report.splits.append(SplitPerson(kind=kind, masked=_mask(kind, normal), rows=tuple(
                _where(m) for m in members), hashes=len(hashes), residents=len(residents)))
    report.rows.sort(key=lambda f: (TABLES.index(f.stored.table), f.stored.row_id, f.stored.field))
    return report
