"""Residents and their channel identities, real-name data (encrypted), sessions, staff, kiosks."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class Channel(StrEnum):
    WECHAT = "wechat"
    ALIPAY = "alipay"


class StaffRole(StrEnum):
    CLERK = "clerk"
    HALL_ADMIN = "hall_admin"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Resident(Model):
    id = fields.BigIntField(primary_key=True)
    # Real-name data: ciphertexts only (AES-256-GCM, key id inside), found through keyed hashes.
    name_enc = fields.TextField(null=True)
    id_number_enc = fields.TextField(null=True)
    phone_enc = fields.TextField(null=True)
    # One ID number, one resident: the database enforces it.
    id_number_hash = fields.CharField(max_length=64, null=True, unique=True)
    phone_hash = fields.CharField(max_length=64, null=True, db_index=True)
    verified_at = fields.DatetimeField(null=True)
    # A resident who logged in on a second platform before binding is folded into the first.
    merged_into: fields.ForeignKeyNullableRelation[Resident] = fields.ForeignKeyField(
        "palmhall.Resident", null=True, related_name=False, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "resident"


class ChannelIdentity(Model):
    id = fields.BigIntField(primary_key=True)
    resident: fields.ForeignKeyRelation[Resident] = fields.ForeignKeyField(
        "palmhall.Resident", related_name="identities", on_delete=fields.CASCADE
    )
    channel = fields.CharEnumField(Channel, max_length=10)
    app_id = fields.CharField(max_length=64)
    # WeChat: openid; Alipay: open_id when the app gets one, else user_id.
    subject = fields.CharField(max_length=128)
    unionid = fields.CharField(max_length=128, null=True)  # WeChat, when the app is in an open platform
    alipay_user_id = fields.CharField(max_length=64, null=True)
    alipay_open_id = fields.CharField(max_length=128, null=True)
    last_login_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "channel_identity"
        unique_together = (("channel", "app_id", "subject"),)


class RefreshToken(Model):
    """One use each. A family is one login's chain of refreshes, revoked whole on reuse."""

    id = fields.BigIntField(primary_key=True)
    family = fields.CharField(max_length=32, db_index=True)
    resident: fields.ForeignKeyRelation[Resident] = fields.ForeignKeyField(
        "palmhall.Resident", related_name="refresh_tokens", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    channel = fields.CharEnumField(Channel, max_length=10)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "refresh_token"


class Staff(Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=64, unique=True)
    display_name = fields.CharField(max_length=64)
    password_hash = fields.CharField(max_length=200)
    must_change_password = fields.BooleanField(default=True)
    active = fields.BooleanField(default=True)
    # Attempts counted before the password is checked (a failure keeps its count, a success takes it back),
    # so that concurrent logins are decided atomically: see identity.service.staff_login.
    failed_logins = fields.IntField(default=0)
    locked_until = fields.DatetimeField(null=True)
    # Bumped by every attempt: a success resets the count only when no attempt began after it.
    login_seq = fields.BigIntField(default=0)
    # Bumped on password or role change: tokens carrying an older version stop working.
    token_version = fields.IntField(default=1)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "staff"


class StaffGrant(Model):
    """One role in one hall."""

    id = fields.IntField(primary_key=True)
    staff: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField(
        "palmhall.Staff", related_name="grants", on_delete=fields.CASCADE
    )
    role = fields.CharEnumField(StaffRole, max_length=12)
    hall: fields.ForeignKeyRelation[Model] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="staff_grants", on_delete=fields.CASCADE
    )

    class Meta:
        table = "staff_grant"
        unique_together = (("staff", "role", "hall"),)


class Kiosk(Model):
    id = fields.IntField(primary_key=True)
    device_id = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=64)
    hall: fields.ForeignKeyRelation[Model] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="kiosks", on_delete=fields.RESTRICT
    )
    # The HMAC key must be usable to verify signatures, so it is encrypted, not hashed.
    secret_enc = fields.TextField()
    enabled = fields.BooleanField(default=True)
    software_version = fields.CharField(max_length=64, null=True)
    last_seen_at = fields.DatetimeField(null=True)
    last_ip = fields.CharField(max_length=64, null=True)
    # One-time enrollment link: only the SHA-256 of its code is kept, with its expiry and when it was used.
    enroll_code_hash = fields.CharField(max_length=64, null=True, unique=True)
    enroll_expires_at = fields.DatetimeField(null=True)
    enroll_used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "kiosk"


class LinkChallenge(Model):
    """Proof asked of whoever wants to join a second platform's login to an existing resident: a one-time
    code texted to the phone on record of that resident. Only a keyed hash of the code is kept."""

    id = fields.BigIntField(primary_key=True)
    # Public handle of the challenge (random), so that ids are not guessable or countable.
    handle = fields.CharField(max_length=32, unique=True)
    requester: fields.ForeignKeyRelation[Resident] = fields.ForeignKeyField(
        "palmhall.Resident", related_name="link_requests", on_delete=fields.CASCADE
    )
    holder: fields.ForeignKeyRelation[Resident] = fields.ForeignKeyField(
        "palmhall.Resident", related_name="link_challenges", on_delete=fields.CASCADE
    )
    code_hash = fields.CharField(max_length=64)
    # Tries are counted before a code is compared, in one conditional UPDATE (see identity.linking).
    attempts = fields.IntField(default=0)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "link_challenge"


class KioskCode(Model):
    """What a resident shows a kiosk (as a QR from the mini program) so the kiosk may act for them, for one
    purpose, once, within minutes: never their access token, which would open everything. Only the SHA-256 of
    the code is kept."""

    id = fields.BigIntField(primary_key=True)
    code_hash = fields.CharField(max_length=64, unique=True)
    resident: fields.ForeignKeyRelation[Resident] = fields.ForeignKeyField(
        "palmhall.Resident", related_name="kiosk_codes", on_delete=fields.CASCADE
    )
    purpose = fields.CharField(max_length=32)
    # Only kiosks of this hall may use it, when the resident named one.
    hall: fields.ForeignKeyNullableRelation[Model] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="kiosk_codes", null=True, on_delete=fields.CASCADE
    )
    # The login session that made it: ending that session ends the code too.
    family = fields.CharField(max_length=32, null=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    used_by = fields.CharField(max_length=32, null=True)  # the kiosk's device id
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "kiosk_code"
