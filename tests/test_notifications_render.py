"""Templates and rendering: every packaged template loads, values fit WeChat's field rules, cuts show."""

from __future__ import annotations

import json
import re
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
    assert catalogue.topics() == set(TOPICS)
    for key, t in catalogue.templates.items():
        assert key == t.topic or key.startswith(t.topic + "."), key  # a variant's file is named after its topic
        if t.silent:
            assert t.when and key == "appointment.cancelled.rescheduled", key  # the one that tells no one, on purpose
            continue
        assert t.inbox["title"] and t.inbox["body"], key
        if t.audience == "resident":
            assert t.wechat is not None and t.alipay is not None and t.page is not None, key
            # A page about one object carries its signed token; list and account pages carry none.
            assert t.page["kind"] in qr.KINDS if "id" in t.page else "kind" not in t.page or t.page["kind"] == "account"
    # The law's notices, the hall's changes to a booking and the answers owed can reach a resident without a
    # mini program: they have a text message.
    for key in ("case.correction_needed", "case.approved", "case.rejected", "resident.channel_attached",
                "resident.channel_detached", "appointment.cancelled.by_hall", "appointment.no_show.barred",
                "complaint.answered", "rectification.closed"):
        assert catalogue.required(catalogue.templates[key]), key
        assert catalogue.templates[key].sms is not None, key
    for key in ("appointment.reminder_due", "appointment.cancelled", "appointment.no_show", "case.delivered",
                "payment.refunded"):
        assert not catalogue.required(catalogue.templates[key]), key


def test_the_variant_is_chosen_by_the_payload_and_the_ordinary_one_otherwise() -> None:
    catalogue = render.load()

    def key(topic: str, **payload: object) -> str | None:
        t = catalogue.for_event(topic, payload)
        return t.key if t else None

    assert key("appointment.cancelled", by="hall", reason="停电") == "appointment.cancelled.by_hall"
    assert key("appointment.cancelled", by="resident") == "appointment.cancelled"
    assert key("appointment.cancelled") == "appointment.cancelled"  # events written before `by` existed
    assert key("appointment.no_show", bar_id=7) == "appointment.no_show.barred"
    assert key("appointment.no_show", bar_id=None) == "appointment.no_show"
    assert key("case.delivered", method="post") == "case.delivered.post"
    assert key("case.delivered", method="pickup") == "case.delivered"
    assert key("evaluation.received", level=1) == "evaluation.received"
    assert key("evaluation.received", level=4) is None  # a good rating alerts no one
    assert key("no.such.topic") is None


def test_a_rebooking_page_carries_its_public_parameters_and_no_token() -> None:
    t = render.load().templates["appointment.cancelled.by_hall"]
    out = render.render(t, {"appointment_id": 41, "hall_id": 3, "item_code": "11330106&x=1", "reason": "停电"},
                        secret=SECRET)
    assert out["inbox"]["page"] == "pages/appointment/book?hall_id=3&item=11330106%26x%3D1"
    assert out["wechat"]["page"] == out["inbox"]["page"] == out["alipay"]["page"]


def _edited(tmp_path: Path, name: str, change: dict[str, object]) -> Path:
    """A copy of the packaged templates with one file's top-level keys changed."""
    folder = tmp_path / name.replace(".", "_")
    folder.mkdir()
    for f in render.PACKAGED.glob("*.json"):
        (folder / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    raw = json.loads((folder / name).read_text(encoding="utf-8"))
    for k, v in change.items():
        if isinstance(v, dict) and v and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    (folder / name).write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("name", "change", "problem"), [
    # Fixed WeChat text must fit its field as it is: WeChat would refuse it, or it would be cut at every send.
    ("case.approved.json", {"wechat": {"data": {"phrase3": "审批已经通过了"}}}, "phrase3"),
    ("appointment.booked.json", {"wechat": {"data": {"thing4": "请携带身份证件和户口簿原件按时到场办理业务"}}},
     "thing4"),
    ("ticket.called.json", {"wechat": {"data": {"character_string1": "号码A"}}}, "character_string1"),
    ("case.approved.json", {"alipay": {"data": {"first": "{case_no}"}}}, "Alipay field 'first'"),
    ("case.approved.json", {"alipay": {"data": {"keyword1": "审" * 51}}}, "keyword1"),
    ("case.approved.json", {"sms": {"template_code": "CASE_DECISION"}}, "template_code"),
    ("case.approved.json", {"sms": {"params": {"case-no": "{case_no}"}}}, "case-no"),
    ("case.approved.json", {"sms": {"params": {"result": "审批通过，请于三个工作日内携带身份证原件和户口簿原件"
                                                         "到转塘大厅领取证照原件"}}}, "result"),
    ("case.approved.json", {"when": {"level_between": [1, 2]}}, "level_between"),
    ("case.approved.json", {"inbox": {"title": "审批通过" * 11}}, "inbox title"),
    ("case.approved.json", {"page": {"path": "pages/case/detail", "kind": "ticket", "id": "{case_id}"}}, "ticket"),
    ("case.approved.json", {"audience": "everyone"}, "everyone"),
    ("case.approved.json", {"inbox": "审批通过"}, "inbox is not an object"),
    ("case.approved.json", {"when": ["level_in"]}, "when is not an object"),
    ("case.approved.json", {"sms": {"params": {"result": 1}}}, "sms fields are not texts by name"),
    ("appointment.no_show.barred.json", {"when": {}}, "more than one template without `when`"),
])
def test_a_template_a_platform_would_refuse_is_refused_when_loaded(tmp_path: Path, name: str,
                                                                   change: dict[str, object], problem: str) -> None:
    with pytest.raises(render.TemplateError, match=re.escape(problem)):
        render.load(_edited(tmp_path, name, change))


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
