"""Templates and rendering: every packaged template loads, values fit WeChat's field rules, cuts show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend import qr
from notifications import render
from notifications.commands import parse_since

SECRET = "render-test-secret-0123456789abcdef0123456789"


def test_every_event_has_a_template_and_resident_ones_have_wechat_and_inbox() -> None:
    from notifications.handlers import TOPICS

    catalogue = render.load()
    assert set(catalogue.templates) == set(TOPICS)
    for topic, t in catalogue.templates.items():
        assert t.inbox["title"] and t.inbox["body"], topic
        if t.audience == "resident":
            assert t.wechat is not None and t.alipay is not None and t.page is not None, topic
            # A page about one object carries its signed token; the account pages carry none.
            assert t.page["kind"] in qr.KINDS if "id" in t.page else t.page["kind"] == "account"
    # The law's notices can reach a resident without a mini program: they have a text message.
    for topic in ("case.correction_needed", "case.approved", "case.rejected", "resident.channel_attached",
                  "resident.channel_detached"):
        assert catalogue.required(catalogue.templates[topic])
        assert catalogue.templates[topic].sms is not None
    assert not catalogue.required(catalogue.templates["appointment.reminder_due"])


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("thing1", "城乡居民基本养老保险参保登记及待遇领取资格认证", "城乡居民基本养老保险参保登记及待遇领取…"),
    ("thing1", "居住证明开具", "居住证明开具"),
    ("character_string2", "330106011-20260302-0001-EXTRA-LONG-SUFFIX", "330106011-20260302-0001-EXTRA..."),
    ("character_string2", "A017号", "A017"),
    ("phrase3", "审批已经通过了", "审批已经通"),
    ("time4", "2026-03-03T01:30:00+00:00", "2026年03月03日 09:30"),
    ("date5", "2026-03-09", "2026年03月09日"),
    ("amount6", "12.5", "12.50元"),
    ("number7", "共 3 项", "3"),
    ("name8", "欧阳娜娜娜娜娜娜娜娜娜", "欧阳娜娜娜娜娜娜娜…"),
])
def test_wechat_values_fit_their_field(key: str, value: str, expected: str) -> None:
    assert render.wechat_value(key, value) == expected


@given(st.text(min_size=0, max_size=80), st.sampled_from(sorted(render.WECHAT_LIMITS)))
def test_no_value_is_ever_too_long_for_its_field(text: str, kind: str) -> None:
    value = render.wechat_value(f"{kind}1", text)
    assert len(value) <= render.WECHAT_LIMITS[kind]


def test_the_page_carries_a_signed_token_never_the_raw_id() -> None:
    t = render.load().templates["case.awaiting_payment"]
    out = render.render(t, {"case_id": 123456, "case_no": "X-1", "item_name": "摊位经营许可", "fee_yuan": "12.50",
                            "fee_text": "12.50元"}, secret=SECRET)
    page = out["wechat"]["page"]
    assert page.startswith("pages/payment/pay?token=") and "123456" not in page
    assert qr.read_token(SECRET, page.split("=", 1)[1]) == ("case", 123456)
    assert out["wechat"]["data"]["amount3"] == {"value": "12.50元"}
    assert out["alipay"]["page"] == page and out["inbox"]["page"] == page


def test_missing_values_render_empty_instead_of_failing() -> None:
    t = render.load().templates["case.approved"]
    out = render.render(t, {"case_id": 1}, secret=SECRET)
    assert out["wechat"]["data"]["character_string1"] == {"value": ""}


def test_an_operator_can_point_at_edited_templates_and_bad_ones_are_named(tmp_path: Path) -> None:
    for f in render.PACKAGED.glob("*.json"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    edited = json.loads((tmp_path / "case.approved.json").read_text(encoding="utf-8"))
    edited["inbox"]["title"] = "好消息：审批通过"
    (tmp_path / "case.approved.json").write_text(json.dumps(edited, ensure_ascii=False), encoding="utf-8")
    assert render.load(tmp_path).templates["case.approved"].inbox["title"] == "好消息：审批通过"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "_categories.json").write_text((tmp_path / "_categories.json").read_text(encoding="utf-8"),
                                          encoding="utf-8")
    edited["wechat"]["data"] = {"colour1": "{x}"}
    (bad / "case.approved.json").write_text(json.dumps(edited, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(render.TemplateError, match=r"case\.approved\.json.*colour1"):
        render.load(bad)


def test_quiet_hours_release_at_the_end_of_the_night() -> None:
    from datetime import UTC, datetime

    from notifications.politeness import QuietHours

    quiet = QuietHours.parse("22:00-08:00")
    assert quiet is not None
    assert quiet.release_at(datetime(2026, 3, 2, 13, 59, tzinfo=UTC)) is None  # 21:59
    assert quiet.release_at(datetime(2026, 3, 2, 14, 0, tzinfo=UTC)) == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    assert quiet.release_at(datetime(2026, 3, 2, 19, 0, tzinfo=UTC)) == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    assert quiet.release_at(datetime(2026, 3, 3, 0, 0, tzinfo=UTC)) is None  # 08:00
    assert QuietHours.parse("") is None
    with pytest.raises(ValueError):
        QuietHours.parse("late")


def test_since_accepts_durations_and_dates() -> None:
    from datetime import UTC, datetime

    assert parse_since("2026-03-01").astimezone(UTC) == datetime(2026, 2, 28, 16, 0, tzinfo=UTC)
    assert (datetime.now(UTC) - parse_since("24h")).total_seconds() == pytest.approx(86400, abs=5)
