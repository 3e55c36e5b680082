"""Who is calling: resident logins and sessions, real-name binding, staff accounts, kiosks."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import string
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from backend import clock, db
from backend.audit import service as audit
from backend.catalog import service as catalog
from backend.crypto import KeyRing, blind_index
from backend.errors import DomainError, register_codes
from backend.identity import events, linking, tokens
from backend.identity.models import (
    Channel,
    ChannelIdentity,
    Kiosk,
    RefreshToken,
    Resident,
    Staff,
    StaffGrant,
    StaffRole,
)
from backend.identity.personal import StoredIdentifier, mask_id_number, mask_name, mask_phone, read_stored
from backend.identity.realname import RealNameVerifier
from backend.jobs import outbox

register_codes({
    "identity.realname_mismatch": (422, "实名信息核验未通过，请核对姓名、身份证号码和手机号码"),
    "identity.id_number_taken": (409, "该身份证号码已绑定其他账号；如是本人，请使用原账号登录或到窗口办理"),
    "identity.already_bound": (409, "您的账号已绑定其他身份证号码，不能更改"),
    "identity.not_verified": (403, "请先完成实名认证"),
    "identity.session_not_found": (404, "未找到该登录会话"),
    "auth.bad_credentials": (401, "用户名或密码错误"),
    "auth.account_locked": (423, "密码错误次数过多，账号已临时锁定，请稍后再试"),
    "auth.account_disabled": (403, "账号已停用"),
    "staff.exists": (409, "该用户名已存在"),
    "staff.not_found": (404, "未找到该工作人员"),
    "staff.password_weak": (422, "新密码至少12位，且须包含字母和数字"),
    "staff.password_reused": (422, "新密码不能与原密码相同"),
    "staff.password_has_username": (422, "新密码不能包含用户名"),
    "staff.password_change_required": (403, "首次登录请先修改密码，修改后才能使用其他功能"),
    "kiosk.not_found": (404, "未找到该自助终端"),
    "kiosk.enroll_invalid": (404, "登记链接无效，请核对链接或联系管理员重新生成"),
    "kiosk.enroll_used": (409, "该登记链接已使用过，请联系管理员重新生成登记链接"),
    "kiosk.enroll_expired": (410, "登记链接已过期（24小时内有效），请联系管理员重新生成"),
    "kiosk.enroll_disabled": (403, "该终端已停用，不能登记"),
})

_hasher = PasswordHasher()
# Verified against when the username is unknown, so timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash("palmhall-dummy-password")

REVOKED_FAMILY = "palmhall:auth:revoked_family:"


# ---- residents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    resident_id: int
    access_token: str
    refresh_token: str
    expires_in: int
    family: str

    def as_dict(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "token_type": "Bearer", "expires_in": self.expires_in,
                "refresh_token": self.refresh_token, "resident_id": self.resident_id}


@dataclass(frozen=True)
class TokenConfig:
    secret: str
    access_ttl: int
    refresh_ttl_days: int
    staff_ttl: int


async def _issue_pair(*, resident_id: int, channel: Channel, config: TokenConfig, family: str | None,
                      using_db: Any) -> TokenPair:
    family = family or uuid.uuid4().hex
    refresh, refresh_hash = tokens.new_refresh_token()
    await RefreshToken.create(
        family=family, resident_id=resident_id, token_hash=refresh_hash, channel=channel,
        expires_at=clock.now() + timedelta(days=config.refresh_ttl_days), using_db=using_db,
    )
    access, ttl = tokens.issue(secret=config.secret, kind="resident", subject=resident_id,
                               ttl_seconds=config.access_ttl, family=family)
    return TokenPair(resident_id, access, refresh, ttl, family)


async def login_channel(
    *, channel: Channel, app_id: str, subject: str, config: TokenConfig, ip: str | None = None,
    unionid: str | None = None, alipay_user_id: str | None = None, alipay_open_id: str | None = None,
) -> TokenPair:
    """A platform vouched for `subject`: find or create its resident and open a session."""
    async with db.transaction() as tx:
        ident = await ChannelIdentity.filter(channel=channel, app_id=app_id, subject=subject).using_db(tx).first()
        created = ident is None
        if ident is None:
            resident = await Resident.create(using_db=tx)
            try:
                ident = await ChannelIdentity.create(
                    resident=resident, channel=channel, app_id=app_id, subject=subject, unionid=unionid,
                    alipay_user_id=alipay_user_id, alipay_open_id=alipay_open_id, using_db=tx,
                )
            except IntegrityError:
                # The same person's first login arrived twice at once; the other one won.
                raise DomainError("auth.token_invalid", message="登录请求重复，请重试") from None
        ident.last_login_at = clock.now()
        if unionid and not ident.unionid:
            ident.unionid = unionid
        await ident.save(using_db=tx)
        resident_id = ident.resident_id  # type: ignore[attr-defined]
        pair = await _issue_pair(resident_id=resident_id, channel=channel, config=config, family=None, using_db=tx)
        await audit.record(using_db=tx, actor_kind="resident", actor_id=resident_id, action="resident.login",
                           target_kind="resident", target_id=resident_id,
                           details={"channel": channel.value, "new": created, "ip": ip})
    return pair


async def refresh(*, token: str, config: TokenConfig, redis: Redis) -> TokenPair:
    """Rotate: the presented token is spent; presenting a spent one ends its whole family."""
    token_hash = tokens.hash_refresh_token(token)
    row = await RefreshToken.get_or_none(token_hash=token_hash)
    if row is None:
        raise DomainError("auth.token_invalid")
    if row.revoked_at is not None:
        raise DomainError("auth.token_invalid")
    if row.used_at is not None:
        await _revoke_family(row.family, redis=redis, config=config, reason="refresh_reused",
                             resident_id=row.resident_id)  # type: ignore[attr-defined]
        raise DomainError("auth.refresh_reused")
    if row.expires_at <= clock.now():
        raise DomainError("auth.token_expired")
    async with db.transaction() as tx:
        # The conditional update is the spend: of two concurrent refreshes only one wins.
        spent = await RefreshToken.filter(id=row.id, used_at=None, revoked_at=None).using_db(tx).update(
            used_at=clock.now())
        if not spent:
            won = False
        else:
            won = True
            resident_id = await _current_resident_id(row.resident_id, using_db=tx)  # type: ignore[attr-defined]
            pair = await _issue_pair(resident_id=resident_id, channel=row.channel, config=config,
                                     family=row.family, using_db=tx)
    if not won:
        await _revoke_family(row.family, redis=redis, config=config, reason="refresh_reused",
                             resident_id=row.resident_id)  # type: ignore[attr-defined]
        raise DomainError("auth.refresh_reused")
    return pair


async def _current_resident_id(resident_id: int, *, using_db: Any = None) -> int:
    r = await Resident.filter(id=resident_id).using_db(using_db).get()
    merged: int | None = r.merged_into_id  # type: ignore[attr-defined]
    return merged or r.id


async def _revoke_family(family: str, *, redis: Redis, config: TokenConfig, reason: str, resident_id: int) -> None:
    async with db.transaction() as tx:
        await RefreshToken.filter(family=family, revoked_at=None).using_db(tx).update(revoked_at=clock.now())
        await audit.record(using_db=tx, actor_kind="system", actor_id=None, action="resident.session_revoked",
                           target_kind="resident", target_id=resident_id,
                           details={"family": family, "reason": reason})
    # Access tokens of the family die too: they are checked against this until they expire.
    await revoke_access(families=[family], reason=reason, redis=redis, config=config)


async def family_revoked(*, redis: Redis, family: str | None) -> bool:
    return bool(family) and bool(await redis.exists(REVOKED_FAMILY + str(family)))


async def list_sessions(*, resident_id: int) -> list[dict[str, Any]]:
    rows = await RefreshToken.filter(resident_id=resident_id, revoked_at=None, used_at=None,
                                     expires_at__gt=clock.now()).order_by("-created_at")
    return [{"id": r.family, "channel": r.channel.value, "since": r.created_at.isoformat(),
             "expires_at": r.expires_at.isoformat()} for r in rows]


async def end_session(*, resident_id: int, family: str, redis: Redis, config: TokenConfig) -> None:
    """Log out one device. Another resident's session is 'not found', never 'forbidden'."""
    if not await RefreshToken.filter(resident_id=resident_id, family=family).exists():
        raise DomainError("identity.session_not_found")
    await _revoke_family(family, redis=redis, config=config, reason="logout", resident_id=resident_id)


async def get_resident(*, resident_id: int) -> Resident:
    resident = await Resident.get_or_none(id=resident_id)
    if resident is None or resident.merged_into_id is not None:  # type: ignore[attr-defined]
        raise DomainError("auth.token_invalid")
    return resident


async def profile(*, resident_id: int, keyring: KeyRing) -> dict[str, Any]:
    """The resident's own view: masked, because a phone screen is seen by others too."""
    resident = await get_resident(resident_id=resident_id)
    channels = sorted({i.channel.value for i in await ChannelIdentity.filter(resident_id=resident.id)})
    real_name = None
    if resident.verified_at is not None:
        real_name = {
            "verified": True,
            "name": mask_name(keyring.decrypt(resident.name_enc or "", aad="resident.name")),
            "id_number": mask_id_number(keyring.decrypt(resident.id_number_enc or "", aad="resident.id_number")),
            "phone": mask_phone(keyring.decrypt(resident.phone_enc or "", aad="resident.phone")),
            "verified_at": resident.verified_at.isoformat(),
        }
    return {"id": resident.id, "channels": channels, "real_name": real_name or {"verified": False}}


@dataclass(frozen=True)
class BindResult:
    resident_id: int
    merged: bool
    tokens: TokenPair | None = None
    # The ID number belongs to another resident: a code was texted to that resident's phone on record.
    link: linking.LinkStarted | None = None


async def bind_real_name(
    *, resident_id: int, name: str, id_number: str, phone: str, verifier: RealNameVerifier,
    keyring: KeyRing, hash_key: str, redis: Redis, secret: str, sender: linking.CodeSender,
    link_rates: linking.LinkRates,
) -> BindResult:
    """Verify and bind name, ID number and phone.

    One ID number belongs to one resident. When another resident holds it already (the same person on the
    other platform, or someone who knows that person's details), nothing is merged here: a code is texted to
    the holder's phone on record, and only `confirm_link` with that code joins this login to the holder.
    """
    me = await get_resident(resident_id=resident_id)
    id_hash = blind_index(hash_key, "id_number", id_number)
    phone_hash = blind_index(hash_key, "phone", phone)
    if me.id_number_hash is not None and me.id_number_hash != id_hash:
        raise DomainError("identity.already_bound")
    result = await verifier.verify(name=name, id_number=id_number, phone=phone)
    if not result.matched:
        async with db.transaction() as tx:
            await audit.record(using_db=tx, actor_kind="resident", actor_id=me.id,
                               action="resident.real_name_rejected", target_kind="resident", target_id=me.id,
                               details={"reason": result.reason})
        raise DomainError("identity.realname_mismatch")
    holder = await Resident.get_or_none(id_number_hash=id_hash)
    if holder is None or holder.id == me.id:
        return await _bind_to(me, name=name, id_number=id_number, phone=phone, id_hash=id_hash,
                              phone_hash=phone_hash, keyring=keyring)
    started = await linking.start(me=me, holder=holder, id_hash=id_hash, keyring=keyring, secret=secret,
                                  sender=sender, redis=redis, rates=link_rates)
    return BindResult(resident_id=me.id, merged=False, link=started)


async def confirm_link(*, resident_id: int, challenge_id: str, code: str, secret: str, config: TokenConfig,
                       redis: Redis) -> BindResult:
    """The texted code proves control of the holder: this login joins the holder, who is told of it."""
    me, holder = await linking.confirm(me_id=resident_id, handle=challenge_id, code=code, secret=secret)
    return await _merge_into(me, holder, config=config, redis=redis)


async def _bind_to(me: Resident, *, name: str, id_number: str, phone: str, id_hash: str, phone_hash: str,
                   keyring: KeyRing) -> BindResult:
    async with db.transaction() as tx:
        me.name_enc = keyring.encrypt(name, aad="resident.name")
        me.id_number_enc = keyring.encrypt(id_number, aad="resident.id_number")
        me.phone_enc = keyring.encrypt(phone, aad="resident.phone")
        me.id_number_hash = id_hash
        me.phone_hash = phone_hash
        me.verified_at = clock.now()
        try:
            await me.save(using_db=tx)
        except IntegrityError:
            # Another account bound this ID number a moment ago.
            raise DomainError("identity.id_number_taken") from None
        await audit.record(using_db=tx, actor_kind="resident", actor_id=me.id, action="resident.real_name_bound",
                           target_kind="resident", target_id=me.id,
                           details={"id_number": mask_id_number(id_number)})
        # What was done for this person at a counter before they bound (walk-in cases) becomes theirs.
        await outbox.emit(events.REAL_NAME_BOUND, {"resident_id": me.id, "at": clock.now().isoformat()},
                          using_db=tx)
    return BindResult(resident_id=me.id, merged=False)


async def _merge_into(me: Resident, holder: Resident, *, config: TokenConfig, redis: Redis) -> BindResult:
    if not await linking.joinable(me, holder):
        raise DomainError("identity.id_number_taken")
    mine = await ChannelIdentity.filter(resident_id=me.id)
    async with db.transaction() as tx:
        await ChannelIdentity.filter(resident_id=me.id).using_db(tx).update(resident_id=holder.id)
        await Resident.filter(id=me.id).using_db(tx).update(merged_into_id=holder.id)
        families = await RefreshToken.filter(resident_id=me.id, revoked_at=None).using_db(tx).values_list(
            "family", flat=True)
        await RefreshToken.filter(resident_id=me.id, revoked_at=None).using_db(tx).update(revoked_at=clock.now())
        channel = mine[0].channel if mine else Channel.WECHAT
        pair = await _issue_pair(resident_id=holder.id, channel=channel, config=config, family=None, using_db=tx)
        await audit.record(using_db=tx, actor_kind="resident", actor_id=me.id, action="resident.merged",
                           target_kind="resident", target_id=holder.id,
                           details={"from": me.id, "channels": sorted(i.channel.value for i in mine),
                                    "proof": "sms_code"})
        await linking.attached(holder_id=holder.id, channels=[i.channel for i in mine], using_db=tx,
                               from_resident=me.id)
    await revoke_access(families=[str(f) for f in families], reason="merged", redis=redis, config=config)
    return BindResult(resident_id=holder.id, merged=True, tokens=pair)


async def revoke_access(*, families: list[str], reason: str, redis: Redis, config: TokenConfig) -> None:
    """Access tokens of these session families stop working now (they are checked against this until expiry)."""
    for fam in set(families):
        await redis.set(REVOKED_FAMILY + fam, reason, ex=config.access_ttl + 60)


async def detach_channel(*, resident_id: int, identity_id: int, redis: Redis, config: TokenConfig) -> None:
    """The owner takes one platform's login off the account; that platform's sessions end at once."""
    _, families = await linking.detach(resident_id=resident_id, identity_id=identity_id)
    await revoke_access(families=families, reason="channel_detached", redis=redis, config=config)


PERSON_CACHE = "palmhall:identity:person:"


async def verified_identity(*, resident_id: int, hash_key: str, redis: Redis | None = None) -> str:
    """The keyed hash of the resident's ID number: limits follow the person, not the login.

    Cached in Redis (it never changes once bound) so a booking rush does not read the database.
    """
    if redis is not None:
        cached = await redis.get(f"{PERSON_CACHE}{resident_id}")
        if cached:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
    resident = await get_resident(resident_id=resident_id)
    if resident.id_number_hash is None:
        raise DomainError("identity.not_verified")
    if redis is not None:
        await redis.set(f"{PERSON_CACHE}{resident_id}", resident.id_number_hash, ex=3600)
    return resident.id_number_hash


# ---- staff ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffPrincipal:
    id: int
    username: str
    display_name: str
    grants: dict[int, frozenset[str]] = field(default_factory=dict)  # hall id -> roles
    # Still on the one-time password: the counter surface lets such a token change it and nothing else.
    must_change_password: bool = False

    def halls_with(self, *roles: StaffRole) -> set[int]:
        wanted = {r.value for r in roles}
        return {hall for hall, have in self.grants.items() if have & wanted}

    def require(self, hall_id: int, *roles: StaffRole) -> None:
        """A clerk acts only in their hall: anything else is forbidden (and said so)."""
        if hall_id not in self.halls_with(*roles):
            raise DomainError("auth.forbidden", details={"hall_id": hall_id, "needs": [r.value for r in roles]})

    @property
    def is_admin(self) -> bool:
        """Admin is a deployment-wide role: held in any hall, it reaches every hall (and creates new ones)."""
        return bool(self.halls_with(StaffRole.ADMIN))

    def require_manager(self, hall_id: int) -> None:
        """A hall's set-up (hours, closures, counters, items, booking rules) is for its hall admins and for admins."""
        if not self.is_admin:
            self.require(hall_id, StaffRole.HALL_ADMIN, StaffRole.ADMIN)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _one_time_password() -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(16))
        if any(c.isdigit() for c in pw) and any(c.isalpha() for c in pw):
            return pw


async def create_staff(*, username: str, display_name: str, hall_code: str, role: StaffRole,
                       actor: str | int = "cli", actor_kind: str = "operator") -> tuple[Staff, str]:
    """A new account with one grant; returns the one-time password (shown once, stored hashed)."""
    hall = await catalog.get_hall(code=hall_code)
    password = _one_time_password()
    async with db.transaction() as tx:
        if await Staff.filter(username=username).using_db(tx).exists():
            raise DomainError("staff.exists")
        staff = await Staff.create(username=username, display_name=display_name,
                                   password_hash=_hasher.hash(password), using_db=tx)
        await StaffGrant.create(staff=staff, role=role, hall_id=hall.id, using_db=tx)
        await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor, action="staff.created",
                           target_kind="staff", target_id=staff.id,
                           details={"username": username, "role": role.value, "hall": hall.code})
    return staff, password


async def create_hall_staff(*, hall_id: int, username: str, display_name: str, role: StaffRole,
                            actor_staff_id: int) -> dict[str, Any]:
    """A new account with a role in the hall, made by a staff member through the API: its one-time password is in
    this answer only, to hand over; the holder must replace it at first login."""
    hall = await catalog.get_hall(hall_id=hall_id)
    staff, password = await create_staff(username=username, display_name=display_name, hall_code=hall.code,
                                         role=role, actor=actor_staff_id, actor_kind="staff")
    return {"staff": {"id": staff.id, "username": staff.username, "display_name": staff.display_name,
                      "roles": [role.value]}, "one_time_password": password}


async def hall_staff(*, hall_id: int) -> list[dict[str, Any]]:
    """The accounts holding a role in the hall, with their roles there."""
    await catalog.get_hall(hall_id=hall_id)
    roles: dict[int, list[str]] = {}
    for staff_id_, role in await StaffGrant.filter(hall_id=hall_id).values_list("staff_id", "role"):
        roles.setdefault(int(staff_id_), []).append(str(role))
    members = await Staff.filter(id__in=sorted(roles)).order_by("username")
    return [{"id": m.id, "username": m.username, "display_name": m.display_name, "roles": sorted(roles[m.id]),
             "active": m.active, "must_change_password": m.must_change_password} for m in members]


async def staff_id(*, username: str) -> int:
    """The id of the account with this username."""
    found = await Staff.filter(username=username).first().values_list("id", flat=True)
    if found is None:
        raise DomainError("staff.not_found")
    return int(found)  # type: ignore[call-overload]


async def set_known_password(*, username: str, password: str, actor: str) -> int:
    """Give an account a password its holder need not change: for the local demo's accounts only (`palmhall demo
    load` prints it); every real account starts with a one-time password. Ends the account's tokens; audited."""
    async with db.transaction() as tx:
        staff = await Staff.filter(username=username).using_db(tx).first()
        if staff is None:
            raise DomainError("staff.not_found")
        staff.password_hash = _hasher.hash(password)
        staff.must_change_password = False
        staff.token_version += 1
        await staff.save(using_db=tx, update_fields=["password_hash", "must_change_password", "token_version"])
        await audit.record(using_db=tx, actor_kind="operator", actor_id=actor, action="staff.password_set",
                           target_kind="staff", target_id=staff.id)
    return staff.id


async def change_grant(*, username: str, hall_code: str, role: StaffRole, grant: bool, actor_kind: str,
                       actor_id: str | int) -> None:
    hall = await catalog.get_hall(code=hall_code)
    async with db.transaction() as tx:
        staff = await Staff.filter(username=username).using_db(tx).first()
        if staff is None:
            raise DomainError("staff.not_found")
        if grant:
            await StaffGrant.get_or_create(staff=staff, role=role, hall_id=hall.id, using_db=tx)
        else:
            await StaffGrant.filter(staff=staff, role=role, hall_id=hall.id).using_db(tx).delete()
        # Tokens carry the version: a change of roles takes effect on the next request.
        staff.token_version += 1
        await staff.save(using_db=tx, update_fields=["token_version"])
        await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id,
                           action="staff.role_granted" if grant else "staff.role_revoked",
                           target_kind="staff", target_id=staff.id,
                           details={"role": role.value, "hall": hall.code})


async def staff_login(*, username: str, password: str, config: TokenConfig, lockout_attempts: int,
                      lockout_minutes: int, ip: str | None = None) -> dict[str, Any]:
    """Log a staff member in; `lockout_attempts` failures in a row lock the account for `lockout_minutes`.

    Decided atomically per account, whatever the number of concurrent logins: each attempt is counted as a
    failure in one conditional UPDATE before its password is checked, and takes that count back only on
    success. More attempts in flight than the limit allows lock the account, so a burst of guesses cannot
    slip a right password past the lock, and a success never clears a lock set by a concurrent failure.
    """
    staff = await Staff.get_or_none(username=username)
    now = clock.now()
    if staff is None:
        await asyncio.to_thread(_check_password, _DUMMY_HASH, password)
        async with db.transaction() as tx:
            await audit.record(using_db=tx, actor_kind="anonymous", actor_id=None, action="staff.login_failed",
                               details={"username": username[:64], "ip": ip, "reason": "unknown_user"})
        raise DomainError("auth.bad_credentials")
    until = now + timedelta(minutes=lockout_minutes)
    # A lock that has run out is lifted, with its count, by whichever attempt sees it first.
    await Staff.filter(id=staff.id, locked_until__lte=now).update(locked_until=None, failed_logins=0)
    seq = await _take_attempt(staff.id, lockout_attempts)
    if seq is None:
        # Locked, or as many attempts in flight as the limit allows: this one is refused unchecked.
        await Staff.filter(id=staff.id, locked_until=None, failed_logins__gte=lockout_attempts).update(
            locked_until=until)
        raise await _locked(staff.id, now)
    if not await asyncio.to_thread(_check_password, staff.password_hash, password):
        locked = bool(await Staff.filter(id=staff.id, locked_until=None,
                                         failed_logins__gte=lockout_attempts).update(locked_until=until))
        async with db.transaction() as tx:
            await audit.record(using_db=tx, actor_kind="staff", actor_id=staff.id, action="staff.login_failed",
                               target_kind="staff", target_id=staff.id, details={"ip": ip, "locked": locked})
        if locked or await Staff.filter(id=staff.id, locked_until__gt=now).exists():
            raise await _locked(staff.id, now)
        raise DomainError("auth.bad_credentials")
    # The right password: no attempt began after this one, so the run of failures ends here; otherwise only
    # this attempt's own count is taken back. Both only while no lock is set.
    cleared = await Staff.filter(id=staff.id, locked_until=None, login_seq=seq).update(failed_logins=0)
    if not cleared and not await Staff.filter(id=staff.id, locked_until=None).update(
            failed_logins=F("failed_logins") - 1):
        raise await _locked(staff.id, now)
    if not staff.active:
        raise DomainError("auth.account_disabled")
    async with db.transaction() as tx:
        if _hasher.check_needs_rehash(staff.password_hash):
            await Staff.filter(id=staff.id).using_db(tx).update(password_hash=_hasher.hash(password))
        await audit.record(using_db=tx, actor_kind="staff", actor_id=staff.id, action="staff.login",
                           target_kind="staff", target_id=staff.id, details={"ip": ip})
    token, ttl = tokens.issue(secret=config.secret, kind="staff", subject=staff.id,
                              ttl_seconds=config.staff_ttl, version=staff.token_version)
    principal = await staff_principal(staff_id=staff.id, version=staff.token_version)
    return {"access_token": token, "token_type": "Bearer", "expires_in": ttl,
            "must_change_password": staff.must_change_password, "staff": describe_staff(principal)}


async def _take_attempt(staff_id: int, limit: int) -> int | None:
    """Count one attempt as a failure unless the account is locked or at its limit; its sequence number, or None."""
    conn = db.connection()
    postgres = conn.capabilities.dialect == "postgres"
    marks = ("$1", "$2") if postgres else ("?", "?")  # only placeholders are interpolated below
    sql = ("UPDATE staff SET failed_logins = failed_logins + 1, login_seq = login_seq + 1 "  # noqa: S608
           f"WHERE id = {marks[0]} AND locked_until IS NULL AND failed_logins < {marks[1]} RETURNING login_seq")
    # execute_query_dict: the asyncpg client's execute_query drops the rows of an UPDATE.
    rows = await conn.execute_query_dict(sql, [staff_id, limit])
    return int(rows[0]["login_seq"]) if rows else None


async def _locked(staff_id: int, now: datetime) -> DomainError:
    until: Any = await Staff.filter(id=staff_id).first().values_list("locked_until", flat=True)
    if not isinstance(until, datetime) or until <= now:
        # At the limit with attempts still in flight, and none of them has failed yet.
        return DomainError("auth.account_locked", headers={"Retry-After": "5"})
    return DomainError("auth.account_locked", details={"locked_until": until.isoformat()},
                       headers={"Retry-After": str(int((until - now).total_seconds()) + 1)})


def _check_password(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


async def staff_principal(*, staff_id: int, version: int) -> StaffPrincipal:
    staff = await Staff.get_or_none(id=staff_id)
    if staff is None or staff.token_version != version:
        raise DomainError("auth.token_invalid")
    if not staff.active:
        raise DomainError("auth.account_disabled")
    grants: dict[int, set[str]] = {}
    for g in await StaffGrant.filter(staff_id=staff.id):
        grants.setdefault(g.hall_id, set()).add(g.role.value)  # type: ignore[attr-defined]
    return StaffPrincipal(id=staff.id, username=staff.username, display_name=staff.display_name,
                          grants={h: frozenset(r) for h, r in grants.items()},
                          must_change_password=staff.must_change_password)


async def staff_names(*, staff_ids: set[int]) -> dict[int, str]:
    """Display names of staff accounts, for figures per clerk."""
    rows = await Staff.filter(id__in=sorted(staff_ids)).values_list("id", "display_name")
    return {int(i): str(name) for i, name in rows}


def describe_staff(p: StaffPrincipal) -> dict[str, Any]:
    return {"id": p.id, "username": p.username, "display_name": p.display_name,
            "grants": [{"hall_id": h, "roles": sorted(r)} for h, r in sorted(p.grants.items())],
            "must_change_password": p.must_change_password}


PASSWORD_MIN_LENGTH = 12


def check_new_password(*, username: str, old: str, new: str) -> None:
    """The policy for a password a person chose: long enough, letters and digits, not the old one,
    and not built on the username (the first thing anyone would try)."""
    if len(new) < PASSWORD_MIN_LENGTH or not any(c.isdigit() for c in new) or not any(c.isalpha() for c in new):
        raise DomainError("staff.password_weak")
    if new == old:
        raise DomainError("staff.password_reused")
    name = username.strip().lower()
    if len(name) >= 3 and name in new.lower():
        raise DomainError("staff.password_has_username")


async def change_password(*, staff_id: int, old: str, new: str) -> None:
    """Replace the password (the one-time one included) and end every token issued before."""
    staff = await Staff.get(id=staff_id)
    if not _check_password(staff.password_hash, old):
        raise DomainError("auth.bad_credentials")
    check_new_password(username=staff.username, old=old, new=new)
    async with db.transaction() as tx:
        staff.password_hash = _hasher.hash(new)
        staff.must_change_password = False
        staff.token_version += 1
        await staff.save(using_db=tx)
        await audit.record(using_db=tx, actor_kind="staff", actor_id=staff.id, action="staff.password_changed",
                           target_kind="staff", target_id=staff.id)


# ---- kiosks ---------------------------------------------------------------------------------


async def register_kiosk(*, hall_code: str, name: str, keyring: KeyRing, actor: str = "cli") -> tuple[Kiosk, str]:
    hall = await catalog.get_hall(code=hall_code)
    secret = secrets.token_urlsafe(32)
    async with db.transaction() as tx:
        kiosk = await Kiosk.create(device_id="KSK" + secrets.token_hex(6).upper(), name=name, hall_id=hall.id,
                                   secret_enc="", using_db=tx)
        kiosk.secret_enc = keyring.encrypt(secret, aad=f"kiosk.secret:{kiosk.device_id}")
        await kiosk.save(using_db=tx, update_fields=["secret_enc"])
        await audit.record(using_db=tx, actor_kind="operator", actor_id=actor, action="kiosk.registered",
                           target_kind="kiosk", target_id=kiosk.device_id, details={"hall": hall.code, "name": name})
    return kiosk, secret


ENROLL_TTL = timedelta(hours=24)


def _enroll_hash(code: str) -> str:
    # The code is 256 random bits, so a plain hash is enough to find it and useless to whoever reads the table.
    return hashlib.sha256(code.encode()).hexdigest()


def enrollment_link(public_base_url: str, code: str) -> str:
    """The code rides in the fragment, which browsers never send: it reaches no server or proxy log."""
    return f"{public_base_url.rstrip('/')}/kiosk/enroll#{code}"


async def issue_enrollment(*, device_id: str, actor: str = "cli") -> tuple[str, datetime]:
    """A fresh one-time enrollment code for the device (any earlier one stops working): (code, expires at)."""
    code = secrets.token_urlsafe(32)
    expires = clock.now() + ENROLL_TTL
    async with db.transaction() as tx:
        kiosk = await Kiosk.filter(device_id=device_id).using_db(tx).first()
        if kiosk is None:
            raise DomainError("kiosk.not_found")
        if not kiosk.enabled:
            raise DomainError("kiosk.enroll_disabled")
        await Kiosk.filter(id=kiosk.id).using_db(tx).update(enroll_code_hash=_enroll_hash(code),
                                                            enroll_expires_at=expires, enroll_used_at=None)
        await audit.record(using_db=tx, actor_kind="operator", actor_id=actor, action="kiosk.enrollment_issued",
                           target_kind="kiosk", target_id=device_id, details={"expires_at": expires.isoformat()})
    return code, expires


async def redeem_enrollment(*, code: str, keyring: KeyRing, ip: str | None) -> dict[str, Any]:
    """Burn the code and give the device a NEW secret: whatever held the old one can no longer sign."""
    digest = _enroll_hash(code.strip())
    kiosk = await Kiosk.get_or_none(enroll_code_hash=digest).prefetch_related("hall")
    if kiosk is None:
        raise DomainError("kiosk.enroll_invalid")
    now = clock.now()
    refusal = ("kiosk.enroll_used" if kiosk.enroll_used_at is not None
               else "kiosk.enroll_expired" if kiosk.enroll_expires_at is None or kiosk.enroll_expires_at <= now
               else "kiosk.enroll_disabled" if not kiosk.enabled else None)
    if refusal is None:
        secret = secrets.token_urlsafe(32)
        async with db.transaction() as tx:
            # Conditional on the code still being unused, so two browsers racing with one link get one secret.
            changed = await Kiosk.filter(id=kiosk.id, enroll_code_hash=digest, enroll_used_at=None).using_db(
                tx).update(secret_enc=keyring.encrypt(secret, aad=f"kiosk.secret:{kiosk.device_id}"),
                           enroll_used_at=now)
            if changed:
                await audit.record(using_db=tx, actor_kind="kiosk", actor_id=kiosk.device_id,
                                   action="kiosk.enrolled", target_kind="kiosk", target_id=kiosk.device_id,
                                   details={"ip": ip})
        if changed:
            hall = kiosk.hall
            return {"device_id": kiosk.device_id, "name": kiosk.name, "secret": secret,
                    "hall": {"id": hall.id, "name": hall.name}}  # type: ignore[attr-defined]
        refusal = "kiosk.enroll_used"
    async with db.transaction() as tx:
        await audit.record(using_db=tx, actor_kind="kiosk", actor_id=kiosk.device_id, action="kiosk.enroll_refused",
                           target_kind="kiosk", target_id=kiosk.device_id, details={"reason": refusal, "ip": ip})
    raise DomainError(refusal)


async def kiosk_with_secret(*, device_id: str, keyring: KeyRing) -> tuple[Kiosk, str] | None:
    kiosk = await Kiosk.get_or_none(device_id=device_id)
    if kiosk is None:
        return None
    return kiosk, keyring.decrypt(kiosk.secret_enc, aad=f"kiosk.secret:{kiosk.device_id}")


async def set_kiosk_enabled(*, device_id: str, enabled: bool, actor: str = "cli") -> None:
    async with db.transaction() as tx:
        changed = await Kiosk.filter(device_id=device_id).using_db(tx).update(enabled=enabled)
        if not changed:
            raise DomainError("kiosk.not_found")
        await audit.record(using_db=tx, actor_kind="operator", actor_id=actor,
                           action="kiosk.enabled" if enabled else "kiosk.disabled", target_kind="kiosk",
                           target_id=device_id)


async def kiosk_heartbeat(*, kiosk_id: int, software_version: str, ip: str | None) -> datetime:
    now = clock.now()
    await Kiosk.filter(id=kiosk_id).update(last_seen_at=now, software_version=software_version[:64], last_ip=ip)
    return now


async def list_kiosks(*, hall_id: int | None = None, silent_after_minutes: int = 10) -> list[dict[str, Any]]:
    query = Kiosk.all().order_by("hall_id", "device_id")
    if hall_id is not None:
        query = query.filter(hall_id=hall_id)
    cutoff = clock.now() - timedelta(minutes=silent_after_minutes)
    return [{
        "device_id": k.device_id, "name": k.name, "hall_id": k.hall_id,  # type: ignore[attr-defined]
        "enabled": k.enabled, "software_version": k.software_version,
        "last_seen_at": k.last_seen_at.isoformat() if k.last_seen_at else None,
        "silent": k.enabled and (k.last_seen_at is None or k.last_seen_at < cutoff),
    } for k in await query]


# ---- key rotation ---------------------------------------------------------------------------


async def rotate_keys(*, keyring: KeyRing, batch: int = 500) -> dict[str, int]:
    """Re-encrypt every personal-data ciphertext not under the current key."""
    counts = {"resident": 0, "kiosk": 0}
    last = 0
    while True:
        rows = await Resident.filter(id__gt=last, verified_at__not_isnull=True).order_by("id").limit(batch)
        if not rows:
            break
        for r in rows:
            last = r.id
            changes = {}
            for column, aad in (("name_enc", "resident.name"), ("id_number_enc", "resident.id_number"),
                                ("phone_enc", "resident.phone")):
                value = getattr(r, column)
                if value and keyring.needs_rotation(value):
                    changes[column] = keyring.encrypt(keyring.decrypt(value, aad=aad), aad=aad)
            if changes:
                await Resident.filter(id=r.id).update(**changes)
                counts["resident"] += 1
    for k in await Kiosk.all():
        aad = f"kiosk.secret:{k.device_id}"
        if keyring.needs_rotation(k.secret_enc):
            await Kiosk.filter(id=k.id).update(secret_enc=keyring.encrypt(keyring.decrypt(k.secret_enc, aad=aad),
                                                                          aad=aad))
            counts["kiosk"] += 1
    async with db.transaction() as tx:
        await audit.record(using_db=tx, actor_kind="operator", actor_id="cli", action="keys.rotated",
                           details={**counts, "current_key": keyring.current})
    return counts


async def stored_identifiers(*, keyring: KeyRing, batch: int = 1000) -> AsyncIterator[StoredIdentifier]:
    """Every resident's ID number and phone as stored, with their keyed hashes (for `identity check-ids`)."""
    last = 0
    while True:
        rows = await (Resident.filter(id__gt=last, id_number_enc__not_isnull=True).order_by("id").limit(batch)
                      .values_list("id", "id_number_enc", "id_number_hash", "phone_enc", "phone_hash"))
        if not rows:
            return
        for rid, id_enc, id_hash, phone_enc, phone_hash in rows:
            last = rid
            yield read_stored(keyring, id_enc, aad="resident.id_number", table="resident", row_id=rid,
                              field="id_number", kind="id_number", hash=id_hash)
            if phone_enc:
                yield read_stored(keyring, phone_enc, aad="resident.phone", table="resident", row_id=rid,
                                  field="phone", kind="phone", hash=phone_hash)


# ---- reaching a resident (notifications) ----------------------------------------------------------


async def resident_holding(*, id_hash: str) -> int | None:
    """The verified resident whose ID number has this keyed hash (reached as the one kept, should they have been
    folded), or None: how a case opened at a counter finds the account of the person it is for."""
    row: Any = await Resident.filter(id_number_hash=id_hash, verified_at__isnull=False).first().values(
        "id", "merged_into_id")
    if not row:
        return None
    return int(row["merged_into_id"] or row["id"])


async def reached_as(*, resident_id: int) -> int:
    """A resident folded into another after binding on a second platform is reached as that one."""
    merged: Any = await Resident.filter(id=resident_id).first().values_list("merged_into_id", flat=True)
    return int(merged) if merged else resident_id


async def channel_addresses(*, resident_id: int) -> dict[str, str]:
    """The resident's mini-program channels and their address there (openid, Alipay open_id or user_id),
    the most recently used identity of each channel."""
    rows = await ChannelIdentity.filter(resident_id=resident_id).order_by("-last_login_at", "-id").values(
        "channel", "subject", "alipay_open_id", "alipay_user_id")
    out: dict[str, str] = {}
    for r in rows:
        channel = str(r["channel"])
        if channel in out:
            continue
        out[channel] = str(r["alipay_open_id"] or r["alipay_user_id"] or r["subject"]) if channel == "alipay" \
            else str(r["subject"])
    return out


async def phone_ciphertext(*, resident_id: int) -> str | None:
    """The encrypted phone number (decrypted only by whoever sends the one text that needs it)."""
    value = await Resident.filter(id=resident_id).first().values_list("phone_enc", flat=True)
    return str(value) if value else None
