"""Joining a second platform's login to an existing resident, only with proof of control of that resident:
a six-digit code texted to the phone on record. Channels of a resident: listed, and detached by the owner.

Binding an ID number that another resident holds never merges by itself (that let anyone who knew a
person's name, ID number and phone take over their account). The holder's phone receives a code; only whoever
holds that phone can finish the join; the holder is told of every channel attached, on their other channels.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from tortoise.expressions import F

from backend import clock, db, ratelimit
from backend.audit import service as audit
from backend.crypto import KeyRing
from backend.errors import DomainError, register_codes
from backend.identity import events
from backend.identity.models import Channel, ChannelIdentity, LinkChallenge, RefreshToken, Resident
from backend.identity.personal import mask_phone
from backend.jobs import outbox

register_codes({
    "identity.link_not_found": (404, "未找到该验证请求，请重新提交实名信息获取验证码"),
    "identity.link_code_wrong": (422, "验证码不正确，请核对短信中的6位验证码"),
    "identity.link_code_exhausted": (423, "验证码错误次数过多，该验证码已失效；请重新提交实名信息获取新的验证码"),
    "identity.link_code_expired": (410, "验证码已过期（5分钟内有效），请重新提交实名信息获取新的验证码"),
    "identity.link_code_used": (409, "该验证码已使用过"),
    "identity.sms_unavailable": (503, "验证码短信发送失败，请稍后再试"),
    "identity.channel_not_found": (404, "未找到该登录方式"),
    "identity.last_channel": (409, "这是您账号唯一的登录方式，不能解除"),
})

CODE_TTL = timedelta(minutes=5)
MAX_TRIES = 5
CHANNEL_NAMES = {Channel.WECHAT: "微信", Channel.ALIPAY: "支付宝"}


class CodeSender:
    """What sends the code: a text through the SMS provider (notifications.sms.SmsProvider)."""

    def __init__(self, provider: Any, template_code: str) -> None:
        self._provider = provider
        self._template = template_code

    async def send(self, *, phone: str, code: str) -> bool:
        result = await self._provider.send(phone=phone, template_code=self._template, params={"code": code})
        return bool(result.outcome == "sent")


@dataclass(frozen=True)
class LinkRates:
    """Texts are a cost and a nuisance to the holder: limited per requesting account and per ID number."""

    per_account: str
    per_id_number: str


@dataclass(frozen=True)
class LinkStarted:
    handle: str
    phone_masked: str
    expires_in: int

    def as_dict(self) -> dict[str, Any]:
        return {"method": "sms", "challenge_id": self.handle, "phone": self.phone_masked,
                "expires_in": self.expires_in, "max_attempts": MAX_TRIES}


def code_hash(secret: str, handle: str, code: str) -> str:
    return hmac.new(secret.encode(), f"link:{handle}:{code}".encode(), hashlib.sha256).hexdigest()


def _new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


async def joinable(me: Resident, holder: Resident) -> bool:
    """A join is possible when the holder stands on its own, has a phone to text, and the joining
    account brings only platforms the holder lacks (one resident, one identity per platform)."""
    if holder.merged_into_id is not None or not holder.phone_enc:  # type: ignore[attr-defined]
        return False
    mine = {i.channel for i in await ChannelIdentity.filter(resident_id=me.id)}
    theirs = {i.channel for i in await ChannelIdentity.filter(resident_id=holder.id)}
    return bool(mine) and not (mine & theirs)


async def start(*, me: Resident, holder: Resident, id_hash: str, keyring: KeyRing, secret: str,
                sender: CodeSender, redis: Redis, rates: LinkRates) -> LinkStarted:
    """Text a fresh code to the holder's phone on record; any earlier open challenge of this pair ends."""
    if not await joinable(me, holder):
        async with db.transaction() as tx:
            await audit.record(using_db=tx, actor_kind="resident", actor_id=me.id, action="resident.link_refused",
                               target_kind="resident", target_id=holder.id, details={"reason": "not_joinable"})
        raise DomainError("identity.id_number_taken")
    await ratelimit.enforce(redis, f"link:account:{me.id}", ratelimit.Limit.parse(rates.per_account))
    await ratelimit.enforce(redis, f"link:id:{id_hash}", ratelimit.Limit.parse(rates.per_id_number))
    phone = keyring.decrypt(holder.phone_enc or "", aad="resident.phone")
    handle, code = secrets.token_hex(16), _new_code()
    now = clock.now()
    async with db.transaction() as tx:
        await LinkChallenge.filter(requester_id=me.id, holder_id=holder.id, used_at=None).using_db(tx).update(
            expires_at=now)
        await LinkChallenge.create(handle=handle, requester_id=me.id, holder_id=holder.id,
                                   code_hash=code_hash(secret, handle, code), expires_at=now + CODE_TTL, using_db=tx)
        await audit.record(using_db=tx, actor_kind="resident", actor_id=me.id, action="resident.link_requested",
                           target_kind="resident", target_id=holder.id,
                           details={"challenge": handle, "phone": mask_phone(phone)})
    sent = await sender.send(phone=phone, code=code)
    async with db.transaction() as tx:
        if not sent:
            await LinkChallenge.filter(handle=handle).using_db(tx).update(expires_at=now)
        await audit.record(using_db=tx, actor_kind="system", actor_id=None,
                           action="resident.link_code_sent" if sent else "resident.link_code_failed",
                           target_kind="resident", target_id=holder.id, details={"challenge": handle})
    if not sent:
        raise DomainError("identity.sms_unavailable")
    return LinkStarted(handle=handle, phone_masked=mask_phone(phone), expires_in=int(CODE_TTL.total_seconds()))


def _refusal(row: LinkChallenge) -> DomainError:
    now = clock.now()
    code = ("identity.link_code_used" if row.used_at is not None
            else "identity.link_code_exhausted" if row.attempts >= MAX_TRIES
            else "identity.link_code_expired" if row.expires_at <= now else "identity.link_code_used")
    return DomainError(code)


async def confirm(*, me_id: int, handle: str, code: str, secret: str) -> tuple[Resident, Resident]:
    """Spend one try of the challenge; on the right code burn it. Returns (me, holder) to be joined.

    The try is counted before the code is compared, by one conditional UPDATE, so that concurrent guesses
    can never compare more than MAX_TRIES codes between them; the burn is a second conditional UPDATE, so that
    one code joins once.
    """
    row = await LinkChallenge.get_or_none(handle=handle, requester_id=me_id)
    if row is None:
        raise DomainError("identity.link_not_found")
    now = clock.now()
    took = await LinkChallenge.filter(id=row.id, used_at=None, attempts__lt=MAX_TRIES, expires_at__gt=now).update(
        attempts=F("attempts") + 1)
    if not took:
        await row.refresh_from_db()
        refusal = _refusal(row)
        await _audit_try(me_id, row, refusal.code)
        raise refusal
    if not hmac.compare_digest(code_hash(secret, handle, code).encode(), row.code_hash.encode()):
        await row.refresh_from_db()
        left = max(0, MAX_TRIES - row.attempts)
        await _audit_try(me_id, row, "wrong_code")
        if left == 0:
            raise DomainError("identity.link_code_exhausted")
        raise DomainError("identity.link_code_wrong", details={"attempts_left": left})
    burned = await LinkChallenge.filter(id=row.id, used_at=None).update(used_at=now)
    if not burned:
        raise DomainError("identity.link_code_used")
    me = await Resident.get(id=me_id)
    holder = await Resident.get(id=row.holder_id)  # type: ignore[attr-defined]
    return me, holder


async def _audit_try(me_id: int, row: LinkChallenge, reason: str) -> None:
    async with db.transaction() as tx:
        await audit.record(using_db=tx, actor_kind="resident", actor_id=me_id, action="resident.link_code_refused",
                           target_kind="resident", target_id=row.holder_id,  # type: ignore[attr-defined]
                           details={"challenge": row.handle, "reason": reason})


async def attached(*, holder_id: int, channels: list[Channel], using_db: Any, from_resident: int) -> None:
    """Tell the holder of every channel attached to their account (a required notice, never switched off)."""
    for channel in channels:
        await outbox.emit(events.CHANNEL_ATTACHED, {
            "resident_id": holder_id, "channel": channel.value, "from_resident": from_resident,
            "at": clock.now().isoformat(),
        }, using_db=using_db)


# ---- channels of a resident -----------------------------------------------------------------------------


async def list_channels(*, resident_id: int, family: str | None) -> list[dict[str, Any]]:
    """The platforms this resident logs in with; `current` marks the one this session came from."""
    current: Any = None
    if family:
        current = await RefreshToken.filter(family=family, resident_id=resident_id).first().values_list(
            "channel", flat=True)
    rows = await ChannelIdentity.filter(resident_id=resident_id).order_by("created_at", "id")
    return [{"id": r.id, "channel": r.channel.value, "name": CHANNEL_NAMES.get(r.channel, r.channel.value),
             "since": r.created_at.isoformat(),
             "last_login_at": r.last_login_at.isoformat() if r.last_login_at else None,
             "current": current is not None and str(current) == r.channel.value} for r in rows]


async def detach(*, resident_id: int, identity_id: int) -> tuple[Channel, list[str]]:
    """Take one platform's login away from this resident: it becomes an account of its own, with none of this
    resident's data, and its sessions end. Returns (channel, families revoked)."""
    async with db.transaction() as tx:
        ident = await ChannelIdentity.filter(id=identity_id, resident_id=resident_id).using_db(tx).first()
        if ident is None:
            raise DomainError("identity.channel_not_found")
        if await ChannelIdentity.filter(resident_id=resident_id).using_db(tx).count() <= 1:
            raise DomainError("identity.last_channel")
        fresh = await Resident.create(using_db=tx)
        moved = await ChannelIdentity.filter(id=ident.id, resident_id=resident_id).using_db(tx).update(
            resident_id=fresh.id)
        if not moved:
            raise DomainError("identity.channel_not_found")
        families = await RefreshToken.filter(resident_id=resident_id, channel=ident.channel,
                                             revoked_at=None).using_db(tx).values_list("family", flat=True)
        await RefreshToken.filter(resident_id=resident_id, channel=ident.channel, revoked_at=None).using_db(
            tx).update(revoked_at=clock.now())
        await audit.record(using_db=tx, actor_kind="resident", actor_id=resident_id,
                           action="resident.channel_detached", target_kind="resident", target_id=resident_id,
                           details={"channel": ident.channel.value, "identity": ident.id, "new_resident": fresh.id})
        await outbox.emit(events.CHANNEL_DETACHED, {"resident_id": resident_id, "channel": ident.channel.value,
                                                    "at": clock.now().isoformat()}, using_db=tx)
    return ident.channel, sorted({str(f) for f in families})
