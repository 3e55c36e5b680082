"""The service-item catalog: codes, import and export (CLI), versions, search and guides over HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sanic import Blueprint, Sanic

from backend import db
from backend.audit.models import AuditEntry
from backend.catalog import importer
from backend.catalog import service as catalog
from backend.catalog.codes import (
    USCC_ALPHABET,
    is_valid_uscc,
    make_item_code,
    make_uscc,
    validate_item_code,
    validate_uscc,
)
from backend.catalog.commands import catalog as catalog_cli
from backend.catalog.models import Counter, OpeningHours, ServiceItem, ServiceItemVersion
from backend.catalog.schemas import Fee, ItemIn
from backend.errors import FieldErrors, InvalidValue
from backend.settings import Settings
from tests.conftest import ON_POSTGRES, REDIS_URL, ROOT, _truncate_all, start_app, stop_app

DEMO_JSON = ROOT / "data" / "catalog" / "demo_items.json"
SAMPLE_CSV = ROOT / "data" / "catalog" / "demo_items_sample.csv"

AGENCY = make_uscc("11330106002501730")  # a township office
OTHER_AGENCY = make_uscc("11330106002496177")


def item_row(basic: str = "4000607016000", **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "code": make_item_code(AGENCY, basic),
        "name": "居住证明开具",
        "department": "转塘街道办事处",
        "subject_type": "person",
        "keywords": "居住 证明",
        "legal_basis": "《居住证暂行条例》",
        "conditions": "在本街道居住的居民",
        "materials": [{"name": "居民身份证", "form": "original", "certificate_type": "居民身份证"}],
        "statutory_days": 5,
        "promised_days": 1,
        "fees": [],
        "channels": ["counter", "mini_program"],
        "online_depth": 3,
        "halls": ["HX-01"],
        "effective_from": "2025-01-01",
    }
    row.update(over)
    return row


def demo_rows() -> list[dict[str, Any]]:
    return json.loads(DEMO_JSON.read_text(encoding="utf-8"))["items"]


async def upsert(row: dict[str, Any]) -> str:
    return await catalog.upsert_item(row=ItemIn.model_validate(row))


async def versions_of(code: str) -> list[int]:
    item = await ServiceItem.get(code=code)
    return sorted(await ServiceItemVersion.filter(item_id=item.id).values_list("version", flat=True))


# ---- codes -------------------------------------------------------------------------------------

first17 = st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17)
basic_codes = st.text(alphabet="0123456789", min_size=10, max_size=22)


def test_the_standard_example_is_valid_and_its_neighbours_are_not() -> None:
    assert is_valid_uscc("91350100M000100Y43")
    assert validate_uscc(" 91350100m000100y43 ") == "91350100M000100Y43"
    assert not is_valid_uscc("91350100M000100Y44")
    with pytest.raises(InvalidValue) as exc:
        validate_uscc("91350100M000100Y4")
    assert (exc.value.code, str(exc.value)) == ("uscc.length", "统一社会信用代码应为18位")
    with pytest.raises(InvalidValue) as exc:
        validate_uscc("91350100M000100I43")
    assert exc.value.code == "uscc.alphabet" and "I" in str(exc.value)


@given(first17, basic_codes)
def test_any_valid_code_passes(head: str, basic: str) -> None:
    uscc = make_uscc(head)
    assert is_valid_uscc(uscc)
    assert validate_item_code(uscc + basic) == uscc + basic
    assert validate_item_code(f"  {(uscc + basic).lower()} ") == uscc + basic


@given(first17, basic_codes, st.integers(0, 17), st.sampled_from(USCC_ALPHABET + "IOZSV*a"))
def test_any_single_character_change_of_the_agency_code_fails(head: str, basic: str, pos: int, char: str) -> None:
    uscc = make_uscc(head)
    if uscc[pos] == char.upper():
        return  # not a change once normalized
    changed = uscc[:pos] + char + uscc[pos + 1:]
    assert not is_valid_uscc(changed.upper())
    with pytest.raises(InvalidValue) as exc:
        validate_item_code(changed + basic)
    assert exc.value.code in ("item_code.check", "item_code.alphabet")
    assert str(exc.value).startswith("实施编码前18位（实施机构）统一社会信用代码")


@pytest.mark.parametrize(("code", "error", "message"), [
    (AGENCY + "123", "item_code.length", "实施编码应为28至40位"),
    (AGENCY + "4" * 23, "item_code.length", "实施编码应为28至40位"),
    (AGENCY[:17] + ("0" if AGENCY[17] != "0" else "1") + "4000607016000", "item_code.check", "校验位不正确"),
    (AGENCY + "40006070160A0", "item_code.basic_code", "第19位起应全部为数字"),
    ("11330106O02501730K4000607016000", "item_code.alphabet", "不用 I、O、Z、S、V"),
])
def test_a_bad_implementation_code_is_refused_with_a_stable_code(code: str, error: str, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ItemIn.model_validate(item_row(code=code))
    fields = FieldErrors.from_pydantic(exc.value).details["fields"]
    assert [(f["field"], f["code"]) for f in fields] == [("code", error)]
    assert message in fields[0]["message"]


# ---- money --------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [12.5, 1250.0, "12.50", "1250", True, -1, None])
def test_fees_are_integer_fen_only(amount: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        Fee.model_validate({"name": "工本费", "amount_fen": amount})
    (field,) = FieldErrors.from_pydantic(exc.value).details["fields"]
    assert field["field"] == "amount_fen"
    if amount != -1:
        assert field["code"] == "fee.amount_fen"
        assert field["message"] == "金额应为以分为单位的整数，例如 1250 表示 12.50 元"
    assert Fee.model_validate({"name": "工本费", "amount_fen": 1250}).amount_fen == 1250


def test_validation_collects_every_problem_of_a_row() -> None:
    bad = item_row(code=AGENCY[:17] + "Z" + "4000607016000", promised_days=9, statutory_days=5,
                   channels=["wechat"], fees=[{"name": "工本费", "amount_fen": "12.50"}],
                   materials=[{"name": "身份证", "form": "scan"}], online_depth=7, queue_group="AB")
    _, reasons = importer.validate_row(bad)
    assert {r["field"]: r["code"] for r in reasons} == {
        "code": "item_code.alphabet",
        "promised_days": "item.promised_days",
        "channels": "item.channel",
        "fees.0.amount_fen": "fee.amount_fen",
        "materials.0.form": "material.form",
        "online_depth": "less_than_equal",
        "queue_group": "item.queue_group",
    }
    assert all(r["message"] for r in reasons)
    assert next(r for r in reasons if r["field"] == "promised_days")["message"] == \
        "承诺时限（9个工作日）不能超过法定时限（5个工作日）"


def test_material_codes_are_filled_in_order_and_channels_are_a_set() -> None:
    row = ItemIn.model_validate(item_row(
        materials=[{"name": "甲"}, {"code": "M02", "name": "乙"}, {"name": "丙"}],
        channels=["mini_program", "counter", "counter"]))
    assert [m.code for m in row.materials] == ["M01", "M02", "M03"]
    assert row.channels == ["mini_program", "counter"]
    same = ItemIn.model_validate(item_row(channels=["counter", "mini_program"]))
    assert catalog.content_hash(catalog.item_content(same)) == catalog.content_hash(
        catalog.item_content(ItemIn.model_validate(item_row())))


# ---- versions (service layer) ---------------------------------------------------------------------


@pytest.fixture
async def hall(orm: str) -> Any:
    return await catalog.create_hall(code="HX-01", name="转塘街道便民服务中心", region_code="330106011")


async def test_a_change_makes_version_2_and_version_1_stays_readable(hall: Any) -> None:
    row = item_row()
    assert await upsert(row) == "added"
    assert await upsert(row) == "unchanged"
    changed = item_row(promised_days=0, effective_from="2025-06-01",
                       fees=[{"name": "工本费", "basis": "某文件", "amount_fen": 500}])
    assert await upsert(changed) == "changed"
    assert await versions_of(row["code"]) == [1, 2]

    old = await catalog.get_guide(code=row["code"], version=1)
    new = await catalog.get_guide(code=row["code"])
    assert (old["version"], old["current_version"], old["promised_days"], old["fees"]) == (1, 2, 1, [])
    assert (old["effective_from"], new["effective_from"]) == ("2025-01-01", "2025-06-01")
    assert (new["version"], new["promised_display"], new["has_fees"]) == (2, "即办", True)
    assert new["fees"] == [{"name": "工本费", "basis": "某文件", "amount_fen": 500, "amount_display": "5.00元"}]
    pinned = await catalog.item_version(code=row["code"])
    assert (pinned.version, pinned.promised_days) == (2, 0)

    audits = await AuditEntry.filter(target_id=row["code"]).order_by("seq")
    assert [a.action for a in audits] == ["catalog.item_added", "catalog.item_changed"]
    assert audits[1].details == {"version": 2, "new_version": True, "fields": ["promised_days", "fees"]}


async def test_item_level_changes_keep_the_version(hall: Any) -> None:
    await catalog.create_hall(code="HX-02", name="另一个大厅", region_code="330106012")
    row = item_row()
    await upsert(row)
    assert await upsert(item_row(keywords="居住证明 租房", halls=["HX-02", "HX-01"], queue_group="b")) == "changed"
    assert await versions_of(row["code"]) == [1]
    guide = await catalog.get_guide(code=row["code"])
    assert [h["code"] for h in guide["halls"]] == ["HX-01", "HX-02"]
    assert (guide["keywords"], guide["queue_group"]) == ("居住证明 租房", "B")
    last = await AuditEntry.all().order_by("-seq").first()
    assert last is not None and last.details["fields"] == ["keywords", "queue_group", "halls"]


async def test_effective_dates_move_forward_only(hall: Any, frozen_clock: Any) -> None:
    row = item_row()
    await upsert(row)
    with pytest.raises(ValidationError) as exc:  # frozen_clock: 2026-03-02
        ItemIn.model_validate(item_row(effective_from="2026-03-03"))
    assert FieldErrors.from_pydantic(exc.value).details["fields"][0]["code"] == "item.effective_in_future"
    with pytest.raises(FieldErrors) as refused:
        await upsert(item_row(promised_days=0, effective_from="2024-12-31"))
    assert refused.value.details["fields"][0]["code"] == "catalog.effective_before_current"
    assert await versions_of(row["code"]) == [1]
    # Without a date a new version takes effect today (Asia/Shanghai).
    assert await upsert({k: v for k, v in item_row(promised_days=0).items() if k != "effective_from"}) == "changed"
    assert (await catalog.get_guide(code=row["code"]))["effective_from"] == "2026-03-02"


async def test_unknown_halls_refuse_the_row_and_write_nothing(orm: str) -> None:
    with pytest.raises(FieldErrors) as exc:
        await upsert(item_row(halls=["HX-99"]))
    assert exc.value.details["fields"] == [
        {"field": "halls", "code": "catalog.unknown_hall", "message": "服务大厅不存在：HX-99"}]
    assert await ServiceItem.all().count() == 0 and await AuditEntry.all().count() == 0


async def test_guide_of_an_unknown_item_or_version(hall: Any) -> None:
    from backend.errors import DomainError

    with pytest.raises(DomainError) as exc:
        await catalog.get_guide(code=make_item_code(AGENCY, "9999999999999"))
    assert (exc.value.code, exc.value.status) == ("catalog.item_not_found", 404)
    await upsert(item_row())
    with pytest.raises(DomainError) as exc:
        await catalog.get_guide(code=item_row()["code"], version=3)
    assert exc.value.code == "catalog.version_not_found"
    await upsert(item_row(active=False))
    with pytest.raises(DomainError) as exc:
        await catalog.item_version(code=item_row()["code"])
    assert exc.value.code == "catalog.item_inactive"


# ---- import files (service layer) -----------------------------------------------------------------


async def test_demo_json_then_its_csv_twin(hall: Any) -> None:
    report = await importer.import_file(DEMO_JSON)
    assert report.counts == {"added": 10, "changed": 0, "unchanged": 0, "refused": 0}
    # The CSV (UTF-8 with BOM, lists as JSON in cells) carries three of the same items: nothing to do.
    twin = await importer.import_file(SAMPLE_CSV)
    assert twin.counts == {"added": 0, "changed": 0, "unchanged": 3, "refused": 0}
    assert [r.row for r in twin.results] == [2, 3, 4]
    assert await ServiceItemVersion.all().count() == 10
    fees = (await catalog.get_guide(code=twin.results[2].code or ""))["fees"]
    assert [(f["amount_fen"], f["amount_display"]) for f in fees] == [(8000, "80.00元"), (1000, "10.00元")]
    assert all(type(f["amount_fen"]) is int for f in fees)


async def test_csv_without_bom_with_a_change_and_a_refusal(hall: Any, tmp_path: Path) -> None:
    await importer.import_file(SAMPLE_CSV)
    text = SAMPLE_CSV.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    lines[1] = lines[1].replace(",5,0,", ",5,2,", 1)  # 居住证明开具: promised 0 -> 2 working days
    lines[2] = lines[2].replace(',"[""mini_program"",""kiosk"",""counter""]",', ',"mini_program,counter",', 1)
    path = tmp_path / "items.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # no BOM
    report = await importer.import_file(path)
    assert report.counts == {"added": 0, "changed": 1, "unchanged": 1, "refused": 1}
    (changed,) = report.of("changed")
    assert (changed.row, changed.version) == (2, 2)
    (refused,) = report.of("refused")
    assert refused.row == 3
    assert refused.reasons == [{"field": "channels", "code": "csv.json_cell",
                                "message": "应为 JSON 列表，例如 [\"counter\"]"}]


async def test_file_level_problems_are_told_before_any_row(tmp_path: Path) -> None:
    cases = {
        "a.csv": ("code,name,colour\n", "表头含未知列：colour"),
        "b.json": ("{\"items\": [", "不是有效的 JSON"),
        "c.txt": ("[]", "无法识别文件格式"),
        "d.json": ("{\"rows\": []}", "JSON 应为事项列表"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        with pytest.raises(importer.ImportFileError) as exc:
            importer.read_rows(path)
        assert message in str(exc.value), name
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("code,name\n1,居住证明\n".encode("gbk"))
    with pytest.raises(importer.ImportFileError, match="UTF-8"):
        importer.read_rows(gbk)


# ---- the command line -------------------------------------------------------------------------------


def in_db(url: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run `fn` with the ORM open, outside any test event loop (the CLI runs its own)."""
    async def main() -> Any:
        await db.init(url, pool_max=2)
        try:
            return await fn()
        finally:
            await db.close()

    return asyncio.run(main())


@pytest.fixture
def cli_db(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean database with hall HX-01, and the environment `palmhall` reads its settings from."""
    async def prepare() -> None:
        if ON_POSTGRES:
            await _truncate_all()
        await catalog.create_hall(code="HX-01", name="转塘街道便民服务中心", region_code="330106011")

    in_db(database_url, prepare)
    for name, value in {"DATABASE_URL": database_url, "PALMHALL_ENV": "test", "LOG_LEVEL": "WARNING",
                        "SECRETS_FILE": str(tmp_path / "secrets.json")}.items():
        monkeypatch.setenv(name, value)
    yield database_url


def palmhall(*args: str) -> Result:
    return CliRunner().invoke(catalog_cli, list(args), catch_exceptions=False)


def test_cli_import_draws_a_bar_reports_and_reimports_as_unchanged(cli_db: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import click._termui_impl

    monkeypatch.setattr(click._termui_impl, "isatty", lambda _: True)  # draw the bar as on a terminal
    first = palmhall("import", str(DEMO_JSON))
    assert first.exit_code == 0, first.output
    assert "importing 10 rows from demo_items.json" in first.stderr
    assert "10/10" in first.stderr and "100%" in first.stderr
    assert "demo_items.json: 10 added, 0 changed, 0 unchanged, 0 refused (10 rows)" in first.stdout
    assert "added     row 1    11330106002501730K4000607016000  居住证明开具  v1" in first.stdout
    again = palmhall("import", str(DEMO_JSON))
    assert again.exit_code == 0
    assert "0 added, 0 changed, 10 unchanged, 0 refused" in again.stdout
    assert in_db(cli_db, lambda: ServiceItemVersion.all().count()) == 10


def test_cli_refused_rows_list_every_reason_and_exit_1(cli_db: str, tmp_path: Path) -> None:
    good = item_row()
    bad = item_row(basic="4000404011000", code=OTHER_AGENCY[:17] + "0" + "4000404011000", name="",
                   fees=[{"name": "工本费", "basis": "", "amount_fen": 12.5}], halls=["HX-01", "HX-77"])
    twice = item_row(name="居住证明开具（重复）")
    path = tmp_path / "items.json"
    path.write_text(json.dumps([good, bad, twice], ensure_ascii=False), encoding="utf-8")
    result = palmhall("import", str(path))
    assert result.exit_code == 1
    out = result.stdout
    assert "1 added, 0 changed, 0 unchanged, 2 refused (3 rows)" in out
    assert "REFUSED   row 2" in out and "REFUSED   row 3" in out
    for reason in ("code: 实施编码前18位（实施机构）统一社会信用代码校验位不正确 [item_code.check]",
                   "name: 内容过短 [string_too_short]",
                   "fees.0.amount_fen: 金额应为以分为单位的整数，例如 1250 表示 12.50 元 [fee.amount_fen]",
                   "halls: 服务大厅不存在：HX-77 [catalog.unknown_hall]",
                   "code: 实施编码与第1行重复，同一文件中每个事项只能出现一次 [import.duplicate_code]"):
        assert reason in out, reason
    assert "2 row(s) refused" in result.stderr
    assert in_db(cli_db, lambda: ServiceItem.all().values_list("code", flat=True)) == [good["code"]]


def test_cli_unreadable_file_exits_2(cli_db: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[{", encoding="utf-8")
    result = palmhall("import", str(path))
    assert result.exit_code == 2
    assert "不是有效的 JSON" in result.stderr


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_then_import_is_all_unchanged(cli_db: str, tmp_path: Path, fmt: str) -> None:
    assert palmhall("import", str(DEMO_JSON)).exit_code == 0
    assert palmhall("import", str(SAMPLE_CSV)).exit_code == 0
    # Give one item a second version and withdraw another, so the export is not just the demo file.
    rows = demo_rows()
    rows[0]["promised_days"] = 1
    rows[0]["effective_from"] = "2025-09-01"
    rows[1]["active"] = False
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    assert "2 changed" in palmhall("import", str(edited)).stdout

    out = tmp_path / f"export.{fmt}"
    exported = palmhall("export", "--format", fmt, "--output", str(out))
    assert exported.exit_code == 0 and "exported 10 items" in exported.stderr
    if fmt == "csv":
        assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM, for spreadsheet programs
    back = palmhall("import", str(out))
    assert back.exit_code == 0, back.output
    assert "0 added, 0 changed, 10 unchanged, 0 refused" in back.stdout
    assert in_db(cli_db, lambda: ServiceItemVersion.all().count()) == 11
    stdout = palmhall("export")
    assert json.loads(stdout.stdout)["items"][0]["code"] == min(r["code"] for r in rows)


# ---- HTTP ---------------------------------------------------------------------------------------------


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """palmhall on loopback with the catalog routes (mounted here until the public surface lists them)."""
    from backend.app import create_app
    from backend.public.catalog_views import bp

    Sanic.test_mode = True
    app = create_app(settings, name=f"palmhall_catalog_{uuid.uuid4().hex[:6]}")
    if "public_catalog" not in app.blueprints:
        app.blueprint(Blueprint.group(bp.copy("public_catalog", with_registration=False), url_prefix="/api/v1"))
    server, url = await start_app(app)
    try:
        if ON_POSTGRES:
            await _truncate_all()
        if REDIS_URL:
            await app.ctx.redis.flushdb()
        await _catalog_fixture()
        async with httpx.AsyncClient(base_url=url + "/api/v1", timeout=30) as client:
            yield client
    finally:
        # Also when the setup above fails: a server left running keeps the ORM's global context.
        await stop_app(server)
        Sanic._app_registry.pop(app.name, None)


async def _catalog_fixture() -> None:
    """Two halls (HX-01 with counters and hours), the demo catalog, and one item in HX-02 only."""
    hall = await catalog.create_hall(code="HX-01", name="转塘街道便民服务中心", region_code="330106011",
                                     address="杭州市西湖区转塘街道象山路1号")
    await catalog.create_hall(code="HX-02", name="双浦镇便民服务中心", region_code="330106013")
    await Counter.create(hall=hall, number=2, name="社保医保窗口", groups=["B"])
    await Counter.create(hall=hall, number=1, name="综合窗口", groups=["A", "C"])
    for weekday in range(5):
        await OpeningHours.create(hall=hall, weekday=weekday, opens=time(13, 30), closes=time(17, 0))
        await OpeningHours.create(hall=hall, weekday=weekday, opens=time(8, 30), closes=time(12, 0))
    await OpeningHours.create(hall=hall, weekday=5, opens=time(9, 0), closes=time(12, 0))
    report = await importer.import_file(DEMO_JSON)
    assert report.refused == 0
    await upsert(item_row(basic="9000000000001", name="门牌号码申领（双浦）", halls=["HX-02"],
                          keywords="门牌 50%折扣_测试", department="双浦镇人民政府"))


async def names(client: httpx.AsyncClient, **params: Any) -> list[str]:
    r = await client.get("/catalog/items", params=params)
    assert r.status_code == 200, r.text
    return [i["name"] for i in r.json()["items"]]


async def test_search_by_chinese_keyword_department_subject_and_hall(api: httpx.AsyncClient) -> None:
    assert await names(api, q="居住证明") == ["居住证明开具"]
    assert await names(api, q="养老 参保") == ["城乡居民基本养老保险参保登记"]  # every word must match
    assert set(await names(api, q="营业执照")) == {"个体工商户设立登记", "农民专业合作社设立登记"}
    assert set(await names(api, department="西湖区市场监督管理局")) == {"个体工商户设立登记", "农民专业合作社设立登记"}
    assert await names(api, q="市场监督", subject_type="legal_entity") == ["农民专业合作社设立登记"]
    hx01, hx02 = (await api.get("/halls")).json()["halls"]
    assert await names(api, hall=hx02["id"]) == ["门牌号码申领（双浦）"]
    assert await names(api, q="门牌", hall=hx01["id"]) == []
    assert len(await names(api, hall=hx01["id"])) == 10
    # % and _ are literal characters in a keyword, not wildcards.
    assert await names(api, q="50%折扣_") == ["门牌号码申领（双浦）"]
    assert await names(api, q="%") == ["门牌号码申领（双浦）"]
    assert await names(api, q="居住_明") == []


async def test_search_answers_summaries_and_pages(api: httpx.AsyncClient) -> None:
    r = await api.get("/catalog/items", params={"page_size": 4, "page": 3})
    body = r.json()
    assert (body["total"], body["page"], body["page_size"], len(body["items"])) == (11, 3, 4, 3)
    assert r.headers["cache-control"] == "public, max-age=60"
    everything = (await api.get("/catalog/items", params={"page_size": 100})).json()["items"]
    assert [i["code"] for i in everything] == sorted(i["code"] for i in everything)
    transfer = next(i for i in everything if i["name"].startswith("国有建设用地"))
    assert transfer == {"code": transfer["code"], "name": "国有建设用地使用权及房屋所有权转移登记",
                        "department": "杭州市规划和自然资源局西湖分局", "subject_type": "person", "online_depth": 3,
                        "channels": ["kiosk", "counter"], "has_fees": True, "promised_days": 5}
    assert sum(i["has_fees"] for i in everything) == 1  # zero-fee items are the rule


async def test_bad_search_parameters_are_422_with_every_field(api: httpx.AsyncClient) -> None:
    r = await api.get("/catalog/items", params={"subject_type": "company", "page": 0, "page_size": 500, "hall": "x"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "validation.failed"
    fields = {f["field"]: f for f in err["details"]["fields"]}
    assert set(fields) == {"subject_type", "page", "page_size", "hall"}
    assert fields["subject_type"]["code"] == "item.subject_type"
    assert fields["subject_type"]["message"] == "服务对象应为以下之一：person、legal_entity"
    assert fields["hall"]["message"] == "应为整数"


async def test_guide_is_complete_and_404_names_the_code(api: httpx.AsyncClient) -> None:
    code = demo_rows()[0]["code"]
    r = await api.get(f"/catalog/items/{code}")
    assert r.status_code == 200, r.text
    g = r.json()
    assert (g["name"], g["subject_type_label"], g["version"], g["effective_from"]) == (
        "居住证明开具", "自然人", 1, "2025-01-01")
    assert g["materials"][0] == {"code": "M01", "name": "居民身份证", "form": "original", "form_label": "原件",
                                 "copies": 1, "required": True, "certificate_type": "居民身份证",
                                 "note": "提供电子身份证照的免交实体证件"}
    assert (g["fees"], g["has_fees"]) == ([], False)
    assert (g["statutory_display"], g["promised_display"]) == ("5个工作日", "即办")
    assert g["channel_labels"] == ["小程序", "自助终端", "窗口"]
    assert (g["online_depth"], g["online_depth_label"], g["certificate_type"]) == (4, "全程网办", "居住证明")
    assert g["halls"] == [{"id": g["halls"][0]["id"], "code": "HX-01", "name": "转塘街道便民服务中心",
                           "address": "杭州市西湖区转塘街道象山路1号"}]
    assert (await api.get(f"/catalog/items/{code.lower()}")).json()["code"] == code

    missing = make_item_code(AGENCY, "9999999999999")
    r = await api.get(f"/catalog/items/{missing}")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "catalog.item_not_found", "message": "未找到该事项",
                                  "details": {"code": missing}}}
    r = await api.get(f"/catalog/items/{code}", params={"version": 2})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "catalog.version_not_found")
    r = await api.get(f"/catalog/items/{code}", params={"version": "latest"})
    assert r.status_code == 422


async def test_halls_with_counters_and_weekly_hours(api: httpx.AsyncClient) -> None:
    halls = (await api.get("/halls")).json()["halls"]
    assert [h["code"] for h in halls] == ["HX-01", "HX-02"]
    hx01 = halls[0]
    assert [(c["number"], c["name"], c["groups"]) for c in hx01["counters"]] == [
        (1, "综合窗口", ["A", "C"]), (2, "社保医保窗口", ["B"])]
    assert len(hx01["opening_hours"]) == 6
    assert hx01["opening_hours"][0] == {"weekday": 0, "weekday_label": "星期一", "periods": [
        {"opens": "08:30", "closes": "12:00"}, {"opens": "13:30", "closes": "17:00"}]}
    assert hx01["opening_hours"][5]["weekday_label"] == "星期六"
    assert (halls[1]["counters"], halls[1]["opening_hours"]) == ([], [])


async def test_the_routes_are_documented(api: httpx.AsyncClient) -> None:
    doc = (await httpx.AsyncClient(base_url=str(api.base_url).removesuffix("/api/v1/")).get(
        "/docs/openapi.json")).json()
    paths = doc["paths"]
    assert {"/api/v1/catalog/items", "/api/v1/catalog/items/{code}", "/api/v1/halls"} <= set(paths)
    params = {p["name"] for p in paths["/api/v1/catalog/items"]["get"]["parameters"]}
    assert {"q", "department", "subject_type", "hall", "page", "page_size"} <= params
    guide = paths["/api/v1/catalog/items/{code}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    fee = guide["properties"]["fees"]["items"]
    assert fee["properties"]["amount_fen"]["type"] == "integer"
    # Nested models are written in place: nothing points at a component the document does not have.
    ours = json.dumps([paths[p] for p in ("/api/v1/catalog/items", "/api/v1/catalog/items/{code}", "/api/v1/halls")])
    assert "$ref" not in ours and "$defs" not in ours
