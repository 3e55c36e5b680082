"""Settings: typed, from the environment; development generates secrets, production refuses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backend import qr
from backend.settings import DERIVED, VARS, Settings, SettingsError, markdown_table
from payments.channels import notify_url
from tests.conftest import ROOT

REAL = {
    "PALMHALL_ENV": "production",
    "DATABASE_URL": "postgres://palmhall:pw@db:5432/palmhall",
    "REDIS_URL": "redis://cache:6379/0",
    "PALMHALL_SECRET_KEY": "k" * 48,
    "PALMHALL_HASH_KEY": "h" * 48,
    "PALMHALL_DATA_KEYS": "2026a:" + "A" * 43 + "=",
    "WECHAT_APP_SECRET": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "ALIPAY_APP_PRIVATE_KEY": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    "HALL_APP_SECRET": "a-real-shared-secret-from-the-hall",
    "REALNAME_SECRET": "a-real-secret-from-the-verifier",
    "ALIPAY_PUBLIC_KEY": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
    # As the WeChat console makes them: letters and digits; 43 base64 characters.
    "WECHAT_PUSH_TOKEN": "hx0f1e2d3c4b5a69788796a5b4c3d2e1",
    "WECHAT_PUSH_AES_KEY": "kF3x9QmZ0pL7vB2nR8tY4uW6sA1dG5hJ3kM9oP2qX7c",
    # Addresses that would otherwise follow HOST and PORT (this server, its development fakes).
    "PUBLIC_BASE_URL": "https://zwfw.xihu.gov.cn",
    "REALNAME_API_BASE": "https://realname.example.gov.cn/api",
    "SMS_ENDPOINT": "https://dysmsapi.aliyuncs.com/",
}

# Secrets other packages add get a production-looking value too.
REAL.update({v.name: f"real-{v.name.lower()}-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
             for v in VARS if v.secret and v.name not in REAL})


def test_production_with_real_secrets_starts() -> None:
    s = Settings.from_env(REAL)
    assert s.is_production and s.secret_key == "k" * 48 and not s.redis_embedded


@pytest.mark.parametrize("name", [v.name for v in VARS if v.secret])
def test_production_refuses_a_missing_secret_and_names_it(name: str) -> None:
    env = {k: v for k, v in REAL.items() if k != name}
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


@pytest.mark.parametrize("value", ["dev-abcdefghijklmnopqrstuvwxyz0123456789", "changeme", "secret"])
def test_production_refuses_a_development_value_and_names_it(value: str) -> None:
    with pytest.raises(SettingsError, match="PALMHALL_SECRET_KEY"):
        Settings.from_env({**REAL, "PALMHALL_SECRET_KEY": value})


def test_production_refuses_generated_dev_secrets_copied_over(tmp_path: Path) -> None:
    dev = Settings.from_env({"SECRETS_FILE": str(tmp_path / "s.json")})
    with pytest.raises(SettingsError, match="PALMHALL_HASH_KEY holds a development value"):
        Settings.from_env({**REAL, "PALMHALL_HASH_KEY": dev.hash_key})


@pytest.mark.parametrize(("name", "value", "says"), [
    ("WECHAT_PUSH_TOKEN", "has-dashes-and_underscores", "3 to 32 letters and digits"),
    ("WECHAT_PUSH_TOKEN", "t" * 33, "3 to 32 letters and digits"),
    ("WECHAT_PUSH_AES_KEY", "tooShort", "43-character EncodingAESKey"),
    ("WECHAT_PUSH_AES_KEY", "k" * 42 + "!", "43-character EncodingAESKey"),
])
def test_production_refuses_a_push_token_or_key_wechat_would_not_accept(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=f"{name} must be .*{says}"):
        Settings.from_env({**REAL, name: value})


def test_the_generated_push_key_works_in_development_and_is_refused_in_production(tmp_path: Path) -> None:
    from notifications.wechat_push import PushCrypto

    dev = Settings.from_env({"SECRETS_FILE": str(tmp_path / "s.json")})
    crypto = PushCrypto(token="devtoken", aes_key=dev.wechat_push_aes_key, app_id=dev.wechat_app_id)
    body, q = crypto.seal("<xml><MsgType>event</MsgType></xml>", nonce="n", timestamp="1", as_json=False)
    assert crypto.open(body=body, content_type="text/xml", msg_signature=q["msg_signature"], timestamp="1",
                       nonce="n") == {"MsgType": "event"}
    with pytest.raises(SettingsError, match="WECHAT_PUSH_AES_KEY holds a development value"):
        Settings.from_env({**REAL, "WECHAT_PUSH_AES_KEY": dev.wechat_push_aes_key})


def test_production_refuses_the_embedded_stores() -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        Settings.from_env({k: v for k, v in REAL.items() if k != "REDIS_URL"})
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        Settings.from_env({**REAL, "DATABASE_URL": "sqlite://x.db"})


def test_development_generates_secrets_once_and_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secrets.json"
    first = Settings.from_env({"SECRETS_FILE": str(path)})
    second = Settings.from_env({"SECRETS_FILE": str(path)})
    assert first.secret_key == second.secret_key and len(first.secret_key) > 32
    assert first.data_keys.startswith("dev-1:")
    stored = json.loads(path.read_text())
    assert set(stored) == {v.name for v in VARS if v.secret}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # An explicit value wins over the file.
    third = Settings.from_env({"SECRETS_FILE": str(path), "PALMHALL_SECRET_KEY": "x" * 40})
    assert third.secret_key == "x" * 40


def test_secrets_file_is_git_ignored() -> None:
    out = subprocess.run(["git", "check-ignore", "-q", "var/secrets.json"], cwd=ROOT)
    assert out.returncode == 0


def test_bad_value_is_named() -> None:
    with pytest.raises(SettingsError, match="PORT"):
        Settings.from_env({"PORT": "eighty"})


def test_model_defaults_match_the_documented_defaults() -> None:
    s = Settings()
    for var in VARS:
        if var.derived:
            assert var.default == "" and Settings.model_fields[var.field].default == "", var.name
            assert s.follows_others(var.field), var.name
        elif not var.secret:
            assert str(getattr(s, var.field)) in (var.default, var.default + ".0"), var.name
    assert {v.field for v in VARS if v.derived} == set(DERIVED)


# ---- settings that follow others ----------------------------------------------------------


def test_addresses_follow_the_port_serve_binds(tmp_path: Path) -> None:
    s = Settings.from_env({"PORT": "8101", "SECRETS_FILE": str(tmp_path / "s.json")})
    assert s.public_base_url == "http://127.0.0.1:8101"
    assert s.payment_notify_base_url == "http://127.0.0.1:8101"
    assert s.realname_api_base == "http://127.0.0.1:8101/_fakes/realname"
    assert s.sms_endpoint == "http://127.0.0.1:8101/_fakes/sms/"
    assert qr.url(s.public_base_url, "T0KEN") == "http://127.0.0.1:8101/q/T0KEN"
    assert notify_url(s, "wechat") == "http://127.0.0.1:8101/api/v1/payments/callbacks/wechat"
    assert notify_url(s, "alipay") == "http://127.0.0.1:8101/api/v1/payments/callbacks/alipay"
    # A wildcard bind is reached on loopback; an IPv6 address in brackets.
    assert Settings(host="0.0.0.0", port=8101).public_base_url == "http://127.0.0.1:8101"
    assert Settings(host="::", port=8101).sms_endpoint == "http://[::1]:8101/_fakes/sms/"
    assert Settings(host="fd00::5", port=80).public_base_url == "http://[fd00::5]:80"
    assert Settings(host="10.1.2.3", port=8101).realname_api_base == "http://10.1.2.3:8101/_fakes/realname"


def test_explicit_addresses_win_and_the_notify_base_follows_the_public_one(tmp_path: Path) -> None:
    s = Settings.from_env({"PORT": "8101", "PUBLIC_BASE_URL": "https://zwfw.xihu.gov.cn",
                           "SECRETS_FILE": str(tmp_path / "s.json")})
    assert s.public_base_url == "https://zwfw.xihu.gov.cn" and not s.follows_others("public_base_url")
    assert notify_url(s, "wechat") == "https://zwfw.xihu.gov.cn/api/v1/payments/callbacks/wechat"
    assert s.realname_api_base == "http://127.0.0.1:8101/_fakes/realname"
    given = Settings.from_env({"PORT": "8101", "PAYMENT_NOTIFY_BASE_URL": "https://pay.xihu.gov.cn",
                               "REALNAME_API_BASE": "https://rn.example", "SMS_ENDPOINT": "https://sms.example/",
                               "SECRETS_FILE": str(tmp_path / "s.json")})
    assert notify_url(given, "alipay") == "https://pay.xihu.gov.cn/api/v1/payments/callbacks/alipay"
    assert (given.public_base_url, given.realname_api_base, given.sms_endpoint) == (
        "http://127.0.0.1:8101", "https://rn.example", "https://sms.example/")


def test_a_copy_with_another_port_moves_what_follows_it_and_keeps_what_was_given() -> None:
    s = Settings(public_base_url="https://zwfw.xihu.gov.cn").with_overrides(port=9001)
    assert s.public_base_url == "https://zwfw.xihu.gov.cn"
    assert s.payment_notify_base_url == "https://zwfw.xihu.gov.cn"
    assert s.realname_api_base == "http://127.0.0.1:9001/_fakes/realname"
    moved = Settings().with_overrides(port=9002, host="0.0.0.0")
    assert (moved.public_base_url, moved.payment_notify_base_url) == ("http://127.0.0.1:9002",) * 2
    again = moved.with_overrides(public_base_url="https://a.example").with_overrides(port=9003)
    assert (again.public_base_url, again.payment_notify_base_url) == ("https://a.example",) * 2
    assert again.sms_endpoint == "http://127.0.0.1:9003/_fakes/sms/"


@pytest.mark.parametrize("name", ["PUBLIC_BASE_URL", "REALNAME_API_BASE", "SMS_ENDPOINT"])
def test_production_refuses_an_address_left_to_follow_host_and_port(name: str) -> None:
    with pytest.raises(SettingsError, match=f"{name} is not set"):
        Settings.from_env({k: v for k, v in REAL.items() if k != name})


def test_serve_passes_its_host_and_port_to_what_follows_them(tmp_path: Path, monkeypatch: Any) -> None:
    """`palmhall serve --port 8101` makes the app with settings whose links name port 8101."""
    from click.testing import CliRunner
    from sanic import Sanic

    from backend import cli

    made: list[Settings] = []
    monkeypatch.setenv("SECRETS_FILE", str(tmp_path / "s.json"))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    monkeypatch.setattr("backend.app.create_app", lambda settings, **kw: made.append(settings) or
                        Sanic(f"serve_{len(made)}"))
    monkeypatch.setattr(Sanic, "prepare", lambda self, **kw: None)
    monkeypatch.setattr(Sanic, "serve_single", staticmethod(lambda primary: None))
    try:
        r = CliRunner().invoke(cli.main, ["serve", "--port", "8101", "--workers", "1"])
    finally:
        for n in range(1, len(made) + 1):
            Sanic._app_registry.pop(f"serve_{n}", None)
    assert r.exit_code == 0, r.output
    assert made and made[0].port == 8101 and made[0].public_base_url == "http://127.0.0.1:8101"
    assert notify_url(made[0], "wechat").startswith("http://127.0.0.1:8101/")


def test_the_development_fakes_are_reached_where_serve_binds(tmp_path: Path) -> None:
    """With PORT=8101 on every interface, the clients and callbacks of the fakes this server mounts name
    127.0.0.1:8101 (they named port 8000, or a wildcard address no client can call)."""
    import uuid

    from sanic import Sanic

    from backend.app import create_app

    s = Settings.from_env({"PLATFORM_FAKES": "true", "HOST": "0.0.0.0", "PORT": "8101",
                           "SECRETS_FILE": str(tmp_path / "s.json")})
    Sanic.test_mode = True
    app = create_app(s, name=f"fakes_{uuid.uuid4().hex[:8]}")
    try:
        served = app.ctx.settings
        base = "http://127.0.0.1:8101"
        assert served.public_base_url == base and notify_url(served, "wechat").startswith(base + "/api/v1/")
        assert (served.realname_api_base, served.sms_endpoint, served.hall_api_base, served.wechatpay_api_base) == (
            f"{base}/_fakes/realname", f"{base}/_fakes/sms/", f"{base}/_fakes/hall", f"{base}/_fakes/wechatpay")
        assert app.ctx.fakes["hall"].callback_url == f"{base}/api/v1/hall/callbacks"
        assert app.ctx.fakes["sms"].report_url.startswith(f"{base}/api/v1/notifications/callbacks/sms?token=")
    finally:
        Sanic._app_registry.pop(app.name, None)


# ---- the platforms' domain check files ------------------------------------------------------


def test_check_files_are_read_as_name_and_content(tmp_path: Path) -> None:
    s = Settings.from_env({"WECHAT_LINK_VERIFY_FILE": "Xa9dK2mQ4z.txt:5f2b8c1d0e7a",
                           "ALIPAY_LINK_VERIFY_FILE": "alipay_77f1.txt:a1b2 c3", "SECRETS_FILE": str(tmp_path / "s")})
    assert s.link_verify_files == {"Xa9dK2mQ4z.txt": "5f2b8c1d0e7a", "alipay_77f1.txt": "a1b2 c3"}
    assert Settings().link_verify_files == {}


@pytest.mark.parametrize("value", ["noname", "x.txt:", ":abc", "../etc/passwd.txt:x", "a/b.txt:x", "x.html:x",
                                   "x.txt:two\nlines", "x.txt:中文", "x" * 101 + ".txt:x"])
def test_a_check_file_setting_that_cannot_be_served_is_refused_and_named(value: str) -> None:
    with pytest.raises(SettingsError, match="WECHAT_LINK_VERIFY_FILE"):
        Settings.from_env({"WECHAT_LINK_VERIFY_FILE": value})


def test_readme_documents_every_variable() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, "stale README: run `palmhall settings doc --readme README.md`"


def test_cli_refuses_to_start_in_production_naming_the_secret(tmp_path: Path) -> None:
    env = {**REAL, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    del env["HALL_APP_SECRET"]
    r = subprocess.run([sys.executable, "-m", "backend.cli", "settings", "check"], env=env,
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert "HALL_APP_SECRET is not set" in r.stderr
