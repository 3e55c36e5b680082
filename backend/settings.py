"""One typed Settings object read from the environment (12-factor)."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

Env = Literal["development", "test", "production"]

# Values that mean "nobody set this": refused in production whatever the name.
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "dev", "test", "placeholder", "xxx"}
DEV_PREFIX = "dev-"


@dataclass(frozen=True)
class Var:
    """One environment variable: its name, default, meaning and whether it is a secret."""

    name: str
    field: str
    default: str
    meaning: str
    secret: bool = False
    # When the default is empty and means "follow other settings": what it follows, as the README shows it.
    derived: str = ""


# The single source of truth for configuration; the README table is generated from it
# (`palmhall settings doc`) and a test keeps the two in step.
VARS: tuple[Var, ...] = (
    Var("PALMHALL_ENV", "env", "development", "`development`, `test` or `production`; production refuses missing or development secrets"),
    Var("DATABASE_URL", "database_url", "sqlite://var/palmhall.sqlite3", "relational store: `sqlite://PATH` (embedded) or `postgres://user:pass@host:5432/db` (asyncpg)"),
    Var("DATABASE_POOL_MAX", "database_pool_max", "10", "PostgreSQL connections per process"),
    Var("REDIS_URL", "redis_url", "", "Redis for cache, locks, rate limits, nonces and pub/sub; empty runs an in-process fake Redis (single process only)"),
    Var("HOST", "host", "127.0.0.1", "address `palmhall serve` binds"),
    Var("PORT", "port", "8000", "port `palmhall serve` binds"),
    Var("WEB_WORKERS", "web_workers", "2", "Sanic worker processes per `serve` (forced to 1 with the in-process Redis)"),
    Var("EMBEDDED_WORKER", "embedded_worker", "auto", "run the outbox worker and periodic tasks inside `serve`: `auto` (only with the in-process Redis), `true`, `false`"),
    Var("PUBLIC_BASE_URL", "public_base_url", "", "external base URL used in QR codes and links (`{PUBLIC_BASE_URL}/q/...`, the kiosk enrollment link); empty follows the address `serve` binds (`0.0.0.0` reads as `127.0.0.1`), which production refuses", derived="`http://HOST:PORT`"),
    Var("LOG_LEVEL", "log_level", "INFO", "log level of the JSON-lines logs"),
    Var("SECRETS_FILE", "secrets_file", "var/secrets.json", "development only: where generated secrets are kept (git-ignored)"),
    Var("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "", "directory for multi-process metrics; `serve` creates one under `var/` when unset"),
    Var("PALMHALL_SECRET_KEY", "secret_key", "", "signs tokens and QR links (≥ 32 chars)", secret=True),
    Var("PALMHALL_HASH_KEY", "hash_key", "", "keys the hash used to find encrypted personal data (≥ 32 chars)", secret=True),
    Var("PALMHALL_DATA_KEYS", "data_keys", "", "AES-256-GCM keys for personal data at rest: `kid:base64key[,kid:base64key...]`, first one encrypts", secret=True),
    Var("OUTBOX_LEASE_SECONDS", "outbox_lease_seconds", "60", "how long a claimed outbox event stays with its worker before another may take it"),
    Var("OUTBOX_MAX_ATTEMPTS", "outbox_max_attempts", "10", "attempts before an outbox event is dead"),
    Var("OUTBOX_BACKOFF_BASE_SECONDS", "outbox_backoff_base", "2", "first retry delay; doubles each attempt, with jitter"),
    Var("OUTBOX_BACKOFF_MAX_SECONDS", "outbox_backoff_max", "3600", "longest retry delay"),
    Var("OUTBOX_POLL_SECONDS", "outbox_poll_seconds", "0.5", "how often an idle worker looks for due events"),
    Var("OUTBOX_BATCH", "outbox_batch", "20", "events one worker claims at a time (run concurrently)"),
    Var("WECHAT_APP_ID", "wechat_app_id", "wx0000000000000000", "WeChat mini program AppID"),
    Var("WECHAT_APP_SECRET", "wechat_app_secret", "", "WeChat mini program AppSecret", secret=True),
    Var("WECHAT_API_BASE", "wechat_api_base", "https://api.weixin.qq.com", "WeChat API base URL (a loopback fake in tests)"),
    Var("ALIPAY_APP_ID", "alipay_app_id", "2021000000000000", "Alipay mini program app id"),
    Var("ALIPAY_APP_PRIVATE_KEY", "alipay_app_private_key", "", "our RSA2 private key for Alipay (PEM or base64 PKCS#8)", secret=True),
    Var("ALIPAY_PUBLIC_KEY", "alipay_public_key", "", "Alipay's RSA2 public key that signs its answers and notifications"),
    Var("ALIPAY_GATEWAY", "alipay_gateway", "https://openapi.alipay.com/gateway.do", "Alipay OpenAPI gateway (a loopback fake in tests)"),
    Var("HALL_API_BASE", "hall_api_base", "http://127.0.0.1:8900", "main hall (一窗受理) API base URL"),
    Var("HALL_APP_ID", "hall_app_id", "palmhall", "our app id at the main hall"),
    Var("HALL_APP_SECRET", "hall_app_secret", "", "HMAC secret shared with the main hall", secret=True),
    Var("HALL_TIMEOUT_SECONDS", "hall_timeout_seconds", "5", "timeout of every call to the main hall API"),
    Var("HALL_CALLBACK_SKEW_SECONDS", "hall_callback_skew_seconds", "300", "how far a main hall callback's timestamp may be from ours; its nonces are kept twice as long"),
    Var("HALL_BREAKER_FAILURES", "hall_breaker_failures", "5", "failed calls in a row after which the main hall circuit breaker opens"),
    Var("HALL_BREAKER_PAUSE_SECONDS", "hall_breaker_pause_seconds", "30", "how long the open breaker stops calling the main hall before one probe"),
    Var("HALL_MATERIAL_LINK_TTL_SECONDS", "hall_material_link_ttl_seconds", "86400", "lifetime of the signed material download links pushed to the main hall"),
    Var("REALNAME_API_BASE", "realname_api_base", "", "real-name verification service; empty is the development fake this server serves (refused in production)", derived="`http://HOST:PORT/_fakes/realname`"),
    Var("REALNAME_APP_ID", "realname_app_id", "palmhall", "our app id at the real-name verification service"),
    Var("REALNAME_SECRET", "realname_secret", "", "HMAC secret for the real-name verification service", secret=True),
    Var("PLATFORM_FAKES", "platform_fakes", "auto", "serve fakes of WeChat, WeChat Pay, Alipay, the real-name service, SMS and the main hall under `/_fakes/` and point the clients at them: `auto` (development only), `true`, `false`; refused in production"),
    Var("FAKES_STATE_DIR", "fakes_state_dir", "var/fakes", "development only: where the platform fakes keep what they were told (the main hall's cases, the payment platforms' trades and refunds), so a restart forgets nothing"),
    Var("ACCESS_TOKEN_TTL_SECONDS", "access_token_ttl", "900", "lifetime of a resident access token"),
    Var("REFRESH_TOKEN_TTL_DAYS", "refresh_token_ttl_days", "30", "lifetime of a resident refresh token (each is single-use)"),
    Var("STAFF_TOKEN_TTL_SECONDS", "staff_token_ttl", "28800", "lifetime of a staff token (one shift)"),
    Var("STAFF_LOCKOUT_ATTEMPTS", "staff_lockout_attempts", "5", "wrong passwords in a row that lock a staff account"),
    Var("STAFF_LOCKOUT_MINUTES", "staff_lockout_minutes", "15", "how long a locked staff account stays locked"),
    Var("KIOSK_CLOCK_SKEW_SECONDS", "kiosk_clock_skew", "300", "how far a kiosk's X-Timestamp may be from ours; nonces are kept this long twice"),
    Var("RATE_LOGIN_IP", "rate_login_ip", "30/60", "logins per client IP: COUNT/SECONDS"),
    Var("RATE_LOGIN_ACCOUNT", "rate_login_account", "10/60", "logins per resident identity or staff username"),
    Var("RATE_REALNAME_RESIDENT", "rate_realname_resident", "5/3600", "real-name binding attempts per resident"),
    Var("RATE_LINK_ACCOUNT", "rate_link_account", "3/3600", "texted codes to join another resident's account, per requesting account"),
    Var("RATE_LINK_ID_NUMBER", "rate_link_id_number", "5/86400", "texted codes to join the account holding one ID number (protects its phone from a flood of texts)"),
    Var("RATE_BOOKING_RESIDENT", "rate_booking_resident", "20/60", "booking and cancelling requests per resident"),
    Var("RATE_CASE_RESIDENT", "rate_case_resident", "20/3600", "applications, correction answers and withdrawals per resident"),
    Var("RATE_COMPLAINT_RESIDENT", "rate_complaint_resident", "5/3600", "complaints and questions per resident"),
    Var("RATE_EVALUATION_RESIDENT", "rate_evaluation_resident", "20/3600", "evaluations (好差评) per resident"),
    Var("RATE_PAYMENT_RESIDENT", "rate_payment_resident", "20/600", "payment requests per resident"),
    Var("RATE_SUBSCRIPTION_RESIDENT", "rate_subscription_resident", "60/600", "message subscriptions and notification settings changes per resident"),
    Var("RATE_RESIDENT_WRITE", "rate_resident_write", "60/60", "any other write of a resident (inbox read marks, logouts, ...)"),
    Var("RATE_UPLOAD_RESIDENT", "rate_upload_resident", "30/60", "uploads per resident"),
    Var("RATE_KIOSK", "rate_kiosk", "240/60", "requests per kiosk device"),
    Var("RATE_PROGRESS_IP", "rate_progress_ip", "60/60", "public progress and QR look-ups per client IP (forged tokens are counted too)"),
    Var("NO_SHOW_GRACE_MINUTES", "no_show_grace_minutes", "30", "minutes after a slot ends before an appointment not checked in is a no-show"),
    Var("NO_SHOW_LIMIT", "no_show_limit", "3", "no-shows within 90 days that bar an ID number from booking"),
    Var("NO_SHOW_BAR_DAYS", "no_show_bar_days", "30", "how long such a bar lasts"),
    Var("UPLOAD_MAX_BYTES", "upload_max_bytes", "10485760", "largest material file a resident may upload (bytes)"),
    Var("UPLOAD_MAX_PIXELS", "upload_max_pixels", "40000000", "most pixels (width × height, read from the header) an uploaded image may have, so none is too big for a clerk's browser to decode"),
    Var("UPLOAD_DAILY_LIMIT", "upload_daily_limit", "50", "uploads per resident per day (Asia/Shanghai)"),
    Var("FILE_STORE", "file_store", "local", "where material files are kept: `local` (FILES_DIR) or `s3` (any S3-compatible store)"),
    Var("FILES_DIR", "files_dir", "var/files", "folder of the local file store (content-addressed by SHA-256)"),
    Var("S3_ENDPOINT", "s3_endpoint", "", "S3-compatible endpoint, path-style, e.g. `https://oss-cn-hangzhou.aliyuncs.com`"),
    Var("S3_BUCKET", "s3_bucket", "palmhall-files", "bucket for material files"),
    Var("S3_REGION", "s3_region", "us-east-1", "region used in the SigV4 signature"),
    Var("S3_ACCESS_KEY", "s3_access_key", "", "S3 access key id"),
    Var("S3_SECRET_KEY", "s3_secret_key", "", "S3 secret access key (needed only with FILE_STORE=s3, never logged)"),
    Var("COMPLAINT_REPLY_DAYS", "complaint_reply_days", "5", "working days staff have to answer a complaint or question"),
    Var("RATE_QR_MISS_IP", "rate_qr_miss_ip", "20/600", "unknown or forged QR tokens per client IP, after which every look-up from it is refused for the window"),
    Var("WECHAT_LINK_VERIFY_FILE", "wechat_link_verify_file", "", "the check file WeChat's 扫普通链接二维码打开小程序 asks for, as `NAME.txt:CONTENT`: served at `/NAME.txt` and `/q/NAME.txt`; empty serves none (see README, QR codes)"),
    Var("ALIPAY_LINK_VERIFY_FILE", "alipay_link_verify_file", "", "the check file Alipay's 关联普通二维码 asks for, as `NAME.txt:CONTENT`: served at `/NAME.txt` and `/q/NAME.txt`; empty serves none"),
    Var("WECHATPAY_API_BASE", "wechatpay_api_base", "https://api.mch.weixin.qq.com", "WeChat Pay API v3 base URL (a loopback fake in development and tests)"),
    Var("WECHATPAY_MCHID", "wechatpay_mchid", "1900000109", "WeChat Pay merchant id (mchid); orders are paid to the mini program's WECHAT_APP_ID"),
    Var("WECHATPAY_MERCHANT_PRIVATE_KEY", "wechatpay_merchant_private_key", "", "the merchant API certificate's private key (apiclient_key.pem, PEM or base64 PKCS#8): signs requests and paySign", secret=True),
    Var("WECHATPAY_MERCHANT_SERIAL_NO", "wechatpay_merchant_serial_no", "", "serial number of the merchant API certificate"),
    Var("WECHATPAY_APIV3_KEY", "wechatpay_apiv3_key", "", "APIv3 key (32 characters): decrypts notification resources", secret=True),
    Var("WECHATPAY_PUBLIC_KEY", "wechatpay_public_key", "", "WeChat Pay platform public key (PEM or base64) that signs answers and notifications"),
    Var("WECHATPAY_PUBLIC_KEY_ID", "wechatpay_public_key_id", "", "id of that platform public key (PUB_KEY_ID_...), as sent in Wechatpay-Serial"),
    Var("ALIPAY_SELLER_ID", "alipay_seller_id", "", "our Alipay merchant PID (2088...): a payment notification for another seller is refused; empty skips the check"),
    Var("PAYMENT_NOTIFY_BASE_URL", "payment_notify_base_url", "", "external base URL the platforms send payment notifications to (`…/api/v1/payments/callbacks/wechat` and `/alipay`); empty follows PUBLIC_BASE_URL", derived="PUBLIC_BASE_URL"),
    Var("PAYMENT_ORDER_TTL_MINUTES", "payment_order_ttl_minutes", "30", "minutes after which an unpaid order is closed at the platform and here"),
    Var("PAYMENT_QUERY_AFTER_SECONDS", "payment_query_after_seconds", "60", "an open order or refund without notification for this long is queried at the platform"),
    Var("NOTIFY_TEMPLATES_DIR", "notify_templates_dir", "", "folder of the notification templates (JSON, one per event); empty uses the packaged ones"),
    Var("NOTIFY_QUIET_HOURS", "notify_quiet_hours", "22:00-08:00", "Asia/Shanghai hours when non-urgent messages (reminders) wait until the end: `HH:MM-HH:MM`, empty for none"),
    Var("NOTIFY_DAILY_CAP", "notify_daily_cap", "5", "pushed messages per resident per day (Asia/Shanghai), not counting those the law requires"),
    Var("NOTIFY_MAX_ATTEMPTS", "notify_max_attempts", "6", "attempts of one message on one channel before it fails for good (then required ones fall back)"),
    Var("NOTIFY_RATE_WECHAT", "notify_rate_wechat", "50/1", "WeChat subscribe messages for all workers together: a token bucket of COUNT per SECONDS"),
    Var("NOTIFY_RATE_ALIPAY", "notify_rate_alipay", "50/1", "Alipay template messages for all workers together: COUNT/SECONDS"),
    Var("NOTIFY_RATE_SMS", "notify_rate_sms", "10/1", "text messages for all workers together: COUNT/SECONDS"),
    Var("WECHAT_MINIPROGRAM_STATE", "wechat_miniprogram_state", "formal", "which mini program a message opens: `formal`, `trial` or `developer`"),
    Var("SMS_ENDPOINT", "sms_endpoint", "", "Aliyun SMS endpoint (`https://dysmsapi.aliyuncs.com/`); empty is the development fake this server serves (refused in production)", derived="`http://HOST:PORT/_fakes/sms/`"),
    Var("SMS_ACCESS_KEY_ID", "sms_access_key_id", "fake-sms-key", "Aliyun SMS AccessKey id"),
    Var("SMS_ACCESS_KEY_SECRET", "sms_access_key_secret", "", "Aliyun SMS AccessKey secret", secret=True),
    Var("SMS_SIGN_NAME", "sms_sign_name", "掌上办", "the registered SMS signature shown as 【…】"),
    Var("SMS_TEMPLATE_LINK_CODE", "sms_template_link_code", "SMS_ACCOUNT_LINK_CODE", "Aliyun SMS verification-code template (one variable, `${code}`) texted to the phone on record when another platform's login asks to join that account"),
    Var("SMS_REPORT_TOKEN", "sms_report_token", "", "secret in the SMS status-report URL set in the Aliyun console (`/api/v1/notifications/callbacks/sms?token=TOKEN`); Aliyun signs no report, so the URL is the secret", secret=True),
    Var("WECHAT_PUSH_TOKEN", "wechat_push_token", "", "Token of the mini program's message push (消息推送): signs its pushes, 3–32 letters and digits", secret=True),
    Var("WECHAT_PUSH_AES_KEY", "wechat_push_aes_key", "", "EncodingAESKey of the message push (43 characters, safe mode): decrypts delivery receipts", secret=True),
    Var("WECHAT_PUSH_SKEW_SECONDS", "wechat_push_skew_seconds", "300", "how far a push's timestamp may be from ours; its nonces are kept twice as long"),
)

_BY_FIELD = {v.field: v for v in VARS}


class SettingsError(RuntimeError):
    """Configuration that must not run; the message names the variable."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    env: Env = "development"
    database_url: str = "sqlite://var/palmhall.sqlite3"
    database_pool_max: int = Field(10, ge=1)
    redis_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    web_workers: int = Field(2, ge=1)
    embedded_worker: Literal["auto", "true", "false"] = "auto"
    public_base_url: str = ""
    log_level: str = "INFO"
    secrets_file: str = "var/secrets.json"
    prometheus_multiproc_dir: str = ""
    secret_key: str = ""
    hash_key: str = ""
    data_keys: str = ""
    outbox_lease_seconds: float = Field(60, gt=0)
    outbox_max_attempts: int = Field(10, ge=1)
    outbox_backoff_base: float = Field(2, ge=0)
    outbox_backoff_max: float = Field(3600, ge=0)
    outbox_poll_seconds: float = Field(0.5, gt=0)
    outbox_batch: int = Field(20, ge=1)
    wechat_app_id: str = "wx0000000000000000"
    wechat_app_secret: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"
    alipay_app_id: str = "2021000000000000"
    alipay_app_private_key: str = ""
    alipay_public_key: str = ""
    alipay_gateway: str = "https://openapi.alipay.com/gateway.do"
    hall_api_base: str = "http://127.0.0.1:8900"
    hall_app_id: str = "palmhall"
    hall_app_secret: str = ""
    hall_timeout_seconds: float = Field(5, gt=0)
    hall_callback_skew_seconds: int = Field(300, ge=10)
    hall_breaker_failures: int = Field(5, ge=1)
    hall_breaker_pause_seconds: float = Field(30, gt=0)
    hall_material_link_ttl_seconds: int = Field(86400, ge=60)
    realname_api_base: str = ""
    realname_app_id: str = "palmhall"
    realname_secret: str = ""
    platform_fakes: Literal["auto", "true", "false"] = "auto"
    fakes_state_dir: str = "var/fakes"
    access_token_ttl: int = Field(900, ge=60)
    refresh_token_ttl_days: int = Field(30, ge=1)
    staff_token_ttl: int = Field(28800, ge=300)
    staff_lockout_attempts: int = Field(5, ge=1)
    staff_lockout_minutes: int = Field(15, ge=1)
    kiosk_clock_skew: int = Field(300, ge=10)
    rate_login_ip: str = "30/60"
    rate_login_account: str = "10/60"
    rate_realname_resident: str = "5/3600"
    rate_link_account: str = "3/3600"
    rate_link_id_number: str = "5/86400"
    rate_booking_resident: str = "20/60"
    rate_case_resident: str = "20/3600"
    rate_complaint_resident: str = "5/3600"
    rate_evaluation_resident: str = "20/3600"
    rate_payment_resident: str = "20/600"
    rate_subscription_resident: str = "60/600"
    rate_resident_write: str = "60/60"
    rate_upload_resident: str = "30/60"
    rate_kiosk: str = "240/60"
    rate_progress_ip: str = "60/60"
    no_show_grace_minutes: int = Field(30, ge=0)
    no_show_limit: int = Field(3, ge=1)
    no_show_bar_days: int = Field(30, ge=1)
    upload_max_bytes: int = Field(10485760, ge=1)
    upload_max_pixels: int = Field(40000000, ge=1)
    upload_daily_limit: int = Field(50, ge=1)
    file_store: Literal["local", "s3"] = "local"
    files_dir: str = "var/files"
    s3_endpoint: str = ""
    s3_bucket: str = "palmhall-files"
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    complaint_reply_days: int = Field(5, ge=1)
    rate_qr_miss_ip: str = "20/600"
    wechat_link_verify_file: str = ""
    alipay_link_verify_file: str = ""
    wechatpay_api_base: str = "https://api.mch.weixin.qq.com"
    wechatpay_mchid: str = "1900000109"
    wechatpay_merchant_private_key: str = ""
    wechatpay_merchant_serial_no: str = ""
    wechatpay_apiv3_key: str = ""
    wechatpay_public_key: str = ""
    wechatpay_public_key_id: str = ""
    alipay_seller_id: str = ""
    payment_notify_base_url: str = ""
    payment_order_ttl_minutes: int = Field(30, ge=1)
    payment_query_after_seconds: int = Field(60, ge=0)

    notify_templates_dir: str = ""
    notify_quiet_hours: str = "22:00-08:00"
    notify_daily_cap: int = Field(5, ge=0)
    notify_max_attempts: int = Field(6, ge=1)
    notify_rate_wechat: str = "50/1"
    notify_rate_alipay: str = "50/1"
    notify_rate_sms: str = "10/1"
    wechat_miniprogram_state: Literal["formal", "trial", "developer"] = "formal"
    sms_endpoint: str = ""
    sms_access_key_id: str = "fake-sms-key"
    sms_access_key_secret: str = ""
    sms_sign_name: str = "掌上办"
    sms_template_link_code: str = "SMS_ACCOUNT_LINK_CODE"
    sms_report_token: str = ""
    wechat_push_token: str = ""
    wechat_push_aes_key: str = ""
    wechat_push_skew_seconds: int = Field(300, ge=1)

    @field_validator("wechat_link_verify_file", "alipay_link_verify_file")
    @classmethod
    def _verify_file(cls, value: str) -> str:
        if value and _verify_file_parts(value) is None:
            raise ValueError("should be NAME.txt:CONTENT (a name of letters, digits, _ and -; one line of content)")
        return value

    @property
    def link_verify_files(self) -> dict[str, str]:
        """The platforms' domain check files: name -> content, for those configured."""
        found = (_verify_file_parts(v) for v in (self.wechat_link_verify_file, self.alipay_link_verify_file) if v)
        return {name: content for name, content in (f for f in found if f is not None)}

    # Settings left empty that were filled from others (DERIVED below), so a copy with another PORT
    # moves them along, and production can tell "not set" from "set to the same value".
    _derived: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _follow_others(self) -> Settings:
        return self._derive()

    def _derive(self) -> Settings:
        filled = set()
        for name, make in DERIVED.items():  # in order: a later one may follow an earlier one
            if not getattr(self, name):
                # Frozen for everyone else; this runs once, while the object is being made.
                object.__setattr__(self, name, make(self))
                filled.add(name)
        self._derived = frozenset(filled)
        return self

    def follows_others(self, field: str) -> bool:
        """Whether `field` was left empty and follows other settings (see DERIVED)."""
        return field in self._derived

    # ---- derived -------------------------------------------------------
    @property
    def local_base_url(self) -> str:
        """This server as a process on the same machine reaches it: the address `serve` binds (a wildcard
        address read as loopback) and its port. The development fakes and the derived defaults use it."""
        return f"http://{_reachable(self.host)}:{self.port}"

    @property
    def redis_embedded(self) -> bool:
        return not self.redis_url

    @property
    def runs_embedded_worker(self) -> bool:
        if self.embedded_worker == "auto":
            return self.redis_embedded
        return self.embedded_worker == "true"

    @property
    def effective_web_workers(self) -> int:
        # An in-process fake Redis cannot be shared between processes: one worker only.
        return 1 if self.redis_embedded else self.web_workers

    @property
    def fakes_enabled(self) -> bool:
        if self.platform_fakes == "auto":
            return self.env == "development"
        return self.platform_fakes == "true"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with `changes`; a setting that follows others follows the changed ones unless it is given."""
        again = {name: "" for name in self._derived if name not in changes}
        return self.model_copy(update={**again, **changes})._derive()

    # ---- loading -------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        for var in VARS:
            if var.name in environ:
                raw[var.field] = environ[var.name].strip()
        env = raw.get("env", "development")
        try:
            settings = cls(**raw)
        except ValidationError as exc:
            bad = ", ".join(
                f"{_BY_FIELD[str(err['loc'][0])].name}: {err['msg']}" for err in exc.errors()
            )
            raise SettingsError(f"invalid configuration: {bad}") from None
        if env == "production":
            settings.check_production()
            return settings
        return settings.with_dev_secrets()

    def with_dev_secrets(self) -> Settings:
        """Fill missing secrets from (or into) the git-ignored secrets file."""
        missing = [v for v in VARS if v.secret and not getattr(self, v.field)]
        if not missing:
            return self
        path = Path(self.secrets_file)
        stored: dict[str, str] = {}
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf-8"))
        changed = False
        for var in missing:
            if var.name not in stored:
                stored[var.name] = _generate(var.name)
                changed = True
        if changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stored, indent=2, sort_keys=True), encoding="utf-8")
            tmp.chmod(0o600)
            tmp.replace(path)
        return self.with_overrides(**{v.field: stored[v.name] for v in missing})

    def check_production(self) -> None:
        for var in VARS:
            if not var.secret:
                continue
            value = getattr(self, var.field)
            if not value:
                raise SettingsError(f"{var.name} is not set; production refuses to start without it")
            if value.lower() in _PLACEHOLDERS or DEV_PREFIX in value.lower()[:8]:
                raise SettingsError(f"{var.name} holds a development value; set a real secret")
            if var.field in ("secret_key", "hash_key") and len(value) < 32:
                raise SettingsError(f"{var.name} is shorter than 32 characters")
        if self.redis_embedded:
            raise SettingsError("REDIS_URL is not set; production needs a real Redis")
        if self.database_url.startswith("sqlite"):
            raise SettingsError("DATABASE_URL points at SQLite; production needs PostgreSQL")
        if not self.alipay_public_key:
            raise SettingsError("ALIPAY_PUBLIC_KEY is not set; Alipay's answers could not be verified")
        if self.platform_fakes == "true":
            raise SettingsError("PLATFORM_FAKES=true serves fake platforms; never in production")
        if self.follows_others("public_base_url"):
            raise SettingsError("PUBLIC_BASE_URL is not set; production needs the public address that QR codes, "
                                "links and payment notifications carry")
        for name in ("realname_api_base", "sms_endpoint"):
            if self.follows_others(name):
                raise SettingsError(f"{_BY_FIELD[name].name} is not set; empty means the development fake")
        if not re.fullmatch(r"[A-Za-z0-9]{3,32}", self.wechat_push_token):
            raise SettingsError("WECHAT_PUSH_TOKEN must be 3 to 32 letters and digits, as the WeChat console wants")
        if not _is_aes_key(self.wechat_push_aes_key):
            raise SettingsError("WECHAT_PUSH_AES_KEY must be the 43-character EncodingAESKey")
        if _aes_key_bytes(self.wechat_push_aes_key).startswith(DEV_PREFIX.encode()):
            raise SettingsError("WECHAT_PUSH_AES_KEY holds a development value; set a real secret")


_VERIFY_FILE = re.compile(r"([A-Za-z0-9_-]{1,100}\.txt):([\x20-\x7e]{1,1000})")


def _verify_file_parts(value: str) -> tuple[str, str] | None:
    """("NAME.txt", "CONTENT") of a check-file setting, or None. The consoles give a random name and one
    short line of plain text; anything else is a mistake better refused at start-up."""
    found = _VERIFY_FILE.fullmatch(value)
    return (found.group(1), found.group(2)) if found else None


def _reachable(host: str) -> str:
    """A bind address as a URL host a client can use: a wildcard is this machine's loopback."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - reading a bind address, not binding
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


# Settings whose empty value follows others, in the order they are worked out. Each default used to embed
# port 8000, so `PORT=8101` left QR links and payment notifications pointing at another server.
DERIVED: dict[str, Callable[[Settings], str]] = {
    "public_base_url": lambda s: s.local_base_url,
    "payment_notify_base_url": lambda s: s.public_base_url,
    "realname_api_base": lambda s: f"{s.local_base_url}/_fakes/realname",
    "sms_endpoint": lambda s: f"{s.local_base_url}/_fakes/sms/",
}


def _aes_key_bytes(value: str) -> bytes:
    return base64.b64decode(value + "=")


def _is_aes_key(value: str) -> bool:
    """WeChat's EncodingAESKey: 43 base64 characters, 32 bytes once decoded."""
    if not re.fullmatch(r"[A-Za-z0-9+/]{43}", value):
        return False
    return len(_aes_key_bytes(value)) == 32


def _generate(name: str) -> str:
    if name == "WECHAT_PUSH_AES_KEY":
        # A working key (the development fakes encrypt with it) whose bytes say it is a development one.
        return base64.b64encode(DEV_PREFIX.encode() + secrets.token_bytes(28)).decode().rstrip("=")
    if name == "PALMHALL_DATA_KEYS":
        return f"{DEV_PREFIX}1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    if name == "ALIPAY_APP_PRIVATE_KEY":
        # A real RSA key, so signing works against the development fakes.
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        return DEV_PREFIX + base64.b64encode(der).decode()
    return DEV_PREFIX + secrets.token_urlsafe(32)


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for var in VARS:
        if var.secret:
            default = "*(generated in development)*"
        elif var.derived:
            default = f"*(empty: {var.derived})*"
        else:
            default = f"`{var.default}`" if var.default else "*(empty)*"
        rows.append(f"| `{var.name}` | {default} | {var.meaning} |")
    return "\n".join(rows)
