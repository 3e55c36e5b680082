"""Settings: typed, from the environment; development generates secrets, production refuses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.settings import VARS, Settings, SettingsError, markdown_table
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
        if not var.secret:
            assert str(getattr(s, var.field)) in (var.default, var.default + ".0"), var.name


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
