"""Planning and delivering notifications: one row per (event, recipient, channel), consent, retries, fallback."""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from tortoise import timezone
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.functions import Count

from backend import clock, db
from backend.audit import service as audit
from backend.crypto import KeyRing
from backend.errors import DomainError, register_codes
from backend.jobs import outbox
from backend.jobs.outbox import Event
from backend.ratelimit import Limit
from backend.settings import Settings
from notifications import context, render
from notifications.channels import Senders, SendResult
from notifications.models import (
    TERMINAL,
    Notification,
    NotifyChannel,
    NotifyStatus,
    Preference,
    Subscription,
    SubscriptionKind,
)
from notifications.politeness import QuietHours, TokenBucket, within_daily_cap

log = logging.getLogger("palmhall.notifications")

DELIVER = "notification.deliver"
PUSH_CHANNELS = (NotifyChannel.WECHAT, NotifyChannel.ALIPAY, NotifyChannel.SMS)

register_codes({
    "notify.not_found": (404, "未找到该消息"),
    "notify.category_required": (409, "该类消息依法必须送达，不能关闭"),
    "notify.unknown_category": (422, "没有这个消息类别"),
})


class DeliveryFailed(Exception):
    """A temporary failure: the outbox retries the delivery with backoff. The text is the provider's answer."""


@dataclass(frozen=True)
class Policy:
    secret_key: str
    keyring: KeyRing | None
    quiet: QuietHours | None
    daily_cap: int
    max_attempts: int
    rates: dict[NotifyChannel, Limit]
    wechat_state: str = "formal"
    templates_dir: str = ""
    catalogue: render.Catalogue = field(default_factory=render.load)

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        return cls(
            secret_key=s.secret_key, keyring=KeyRing.parse(s.data_keys) if s.data_keys else None,
            quiet=QuietHours.parse(s.notify_quiet_hours), daily_cap=s.notify_daily_cap,
            max_attempts=s.notify_max_attempts,
            rates={NotifyChannel.WECHAT: Limit.parse(s.notify_rate_wechat),
                   NotifyChannel.ALIPAY: Limit.parse(s.notify_rate_alipay),
                   NotifyChannel.SMS: Limit.parse(s.notify_rate_sms)},
            wechat_state=s.wechat_miniprogram_state, templates_dir=s.notify_templates_dir,
            catalogue=render.load(s.notify_templates_dir or None),
        )


# ---- planning: one event -> rows ----------------------------------------------------------------


async def plan(event: Event, *, policy: Policy) -> list[int]:
    """Write the rows an event calls for and schedule their delivery; a second run writes nothing.

    The inbox (or staff inbox) row is written at once; the first push channel's row is queued as a
    `notification.deliver` outbox event in the same transaction, so a row never waits without one.

    An event whose payload names the event it `amends_event` (a correction notice completed before the resident
    answered it) brings that event's messages up to date instead: the resident reads one notice, not two.
    """
    template = policy.catalogue.for_event(event.topic, event.payload)
    if template is None or template.silent:
        return []
    at = await context.event_time(event.id)
    who = await context.audience(event.topic, event.payload, at=at, template=template)
    amends = event.payload.get("amends_event")
    made: list[int] = []
    for hall_id in who.halls:
        made += await _plan_staff(event, template, hall_id, who.values, at)
    for resident_id in dict.fromkeys(who.residents):
        if amends and await _amend_resident(str(amends), template, resident_id, who.values, policy):
            continue
        made += await _plan_resident(event, template, resident_id, who.values, at, policy,
                                     skip=who.skip_channels)
    return made


AMENDED_MARK = "（已更新）"


async def _amend_resident(amended_event: str, template: render.Template, resident_id: int, values: dict[str, Any],
                          policy: Policy) -> bool:
    """Rewrite the messages an earlier event left for this resident with what is true now: the inbox entry (unread
    again, marked as updated) and any push not sent yet. A push already sent cannot be taken back, and no second
    one follows it. False when that event left this resident nothing (then the amendment is news to plan)."""
    rows = await Notification.filter(event_id=amended_event, recipient=f"resident:{resident_id}")
    if not rows:
        return False
    rendered = render.render(template, values, secret=policy.secret_key, wechat_state=policy.wechat_state)
    async with db.transaction() as tx:
        for row in rows:
            if row.channel == NotifyChannel.INBOX:
                inbox = dict(rendered["inbox"])
                title = str(inbox.get("title", ""))
                inbox["title"] = render.cut(title + AMENDED_MARK, render.INBOX_TITLE_LIMIT)
                await Notification.filter(id=row.id).using_db(tx).update(content=inbox, read_at=None)
            elif row.channel in PUSH_CHANNELS and row.status in (NotifyStatus.CREATED,
                                                                 NotifyStatus.TEMPORARY_FAILURE):
                chain: list[str] = list(row.content.get("chain", []))
                content = {**row.content, "messages": {c: rendered[c] for c in chain if c in rendered}}
                # Only a row still waiting changes: one a worker is sending goes out as it was read.
                await Notification.filter(id=row.id, status=row.status).using_db(tx).update(content=content)
    return True


async def _plan_staff(event: Event, template: render.Template, hall_id: int, values: dict[str, Any],
                      at: datetime) -> list[int]:
    rendered = render.render(template, values, secret="")
    try:
        row = await Notification.create(
            event_id=event.id, topic=event.topic, recipient=f"hall:{hall_id}", hall_id=hall_id,
            channel=NotifyChannel.STAFF_INBOX, template=template.key, status=NotifyStatus.SENT,
            content=rendered["inbox"], event_at_ms=_ms(at), sent_at_ms=clock.now_ms(),
        )
    except IntegrityError:
        return []  # the same event delivered again
    return [row.id]


async def _plan_resident(event: Event, template: render.Template, resident_id: int, values: dict[str, Any],
                         at: datetime, policy: Policy, *, skip: frozenset[str] = frozenset()) -> list[int]:
    required = policy.catalogue.required(template)
    rendered = render.render(template, values, secret=policy.secret_key, wechat_state=policy.wechat_state)
    chain: list[str] = []
    if required or await category_enabled(resident_id=resident_id, category=template.category or ""):
        have = await context.channels_of(resident_id)
        chain = [c for c in ("wechat", "alipay") if c in have and c in rendered and c not in skip]
        if required and "sms" in rendered:
            chain.append("sms")  # the law wants it to arrive: a text when no mini program may carry it
    common = {"event_id": event.id, "topic": event.topic, "recipient": f"resident:{resident_id}",
              "resident_id": resident_id, "template": template.key, "required": required, "event_at_ms": _ms(at)}
    content = {"chain": chain, "urgent": template.urgent, "category": template.category,
               "messages": {c: rendered[c] for c in chain}}
    try:
        async with db.transaction() as tx:
            inbox = await Notification.create(channel=NotifyChannel.INBOX, status=NotifyStatus.SENT,
                                              content=rendered["inbox"], sent_at_ms=clock.now_ms(),
                                              using_db=tx, **common)
            made = [inbox.id]
            if chain:
                row = await Notification.create(channel=NotifyChannel(chain[0]), content=content,
                                                using_db=tx, **common)
                await _schedule(row, policy=policy, using_db=tx)
                made.append(row.id)
    except IntegrityError:
        return []  # planned before: the outbox delivered this event twice
    return made


async def _schedule(row: Notification, *, policy: Policy, using_db: Any, delay: float = 0) -> None:
    """Queue the row's delivery; quiet hours hold what is not urgent until they end."""
    now = clock.now()
    if policy.quiet is not None and not row.content.get("urgent"):
        release = policy.quiet.release_at(now)
        if release is not None:
            delay = max(delay, (release - now).total_seconds())
            await Notification.filter(id=row.id).using_db(using_db).update(
                hold_until_ms=now_ms_plus(now, delay))
    await outbox.emit(DELIVER, {"notification_id": row.id}, using_db=using_db, delay_seconds=delay,
                      max_attempts=policy.max_attempts, ordering_key=None)


def now_ms_plus(now: datetime, seconds: float) -> int:
    return _ms(now) + int(seconds * 1000)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# ---- delivering one row ------------------------------------------------------------------------


async def deliver(event: Event, *, policy: Policy, senders: Senders, redis: Redis) -> NotifyStatus | None:
    """Send one row on its channel. Temporary failures raise DeliveryFailed (the outbox retries);
    everything else ends the row in a terminal state, falling back to the next channel when it may."""
    row = await Notification.get_or_none(id=int(event.payload["notification_id"]))
    if row is None or row.status in TERMINAL or row.channel not in PUSH_CHANNELS:
        return row.status if row else None
    if row.status == NotifyStatus.SENDING and not row.required:
        # The last attempt died between asking the provider and hearing back: it may have arrived.
        # Sending again could show it twice; the inbox has it anyway. A notice the law requires is
        # sent again instead: twice is better than never.
        return await _finish(row, NotifyStatus.PERMANENT_FAILURE, reason="outcome_unknown", policy=policy,
                             fallback=False)
    now = clock.now()
    if policy.quiet is not None and not row.content.get("urgent") and policy.quiet.release_at(now) is not None:
        # A retry that fell into quiet hours waits for the morning like a first try.
        async with db.transaction() as tx:
            await _schedule(row, policy=policy, using_db=tx)
        return row.status
    resident_id = int(row.resident_id or 0)
    target = await _target(row, policy)
    if target is None:
        return await _finish(row, NotifyStatus.CANCELLED, reason="no_address", policy=policy)
    message: dict[str, Any] = row.content["messages"][row.channel.value]
    if row.channel in (NotifyChannel.WECHAT, NotifyChannel.ALIPAY) and not row.consent_taken:
        template_id = str(message.get("template_id") or message.get("user_template_id"))
        if not await take_consent(resident_id=resident_id, channel=row.channel, template_id=template_id):
            # No consent, no message: WeChat is not even asked. The inbox already has it.
            return await _finish(row, NotifyStatus.CANCELLED, reason="no_consent", policy=policy)
        row.consent_taken = True
        await Notification.filter(id=row.id).update(consent_taken=True)
    if not row.required and row.attempts == 0 and not await within_daily_cap(
            redis, resident_id=resident_id, moment=now, cap=policy.daily_cap):
        await _give_back_consent(row, message)
        return await _finish(row, NotifyStatus.CANCELLED, reason="daily_cap", policy=policy, fallback=False)
    await TokenBucket(redis, row.channel.value, policy.rates[row.channel]).take()
    await Notification.filter(id=row.id).update(status=NotifyStatus.SENDING, attempts=F("attempts") + 1)
    row.attempts += 1
    result = await senders.get(row.channel).send(target=target, message=message)
    if result.outcome == "sent":
        await Notification.filter(id=row.id).update(
            status=NotifyStatus.SENT, provider_answer=result.answer, provider_id=result.provider_id,
            sent_at_ms=clock.now_ms(), reason=None)
        if result.provider_id:
            # The platform may have reported delivery before we recorded the send: apply it now.
            early = await redis.getdel(_early_key(row.channel, result.provider_id))
            if early:
                return await apply_receipt(DeliveryReport.loads(early), policy=policy) or NotifyStatus.SENT
        return NotifyStatus.SENT
    if result.outcome == "permanent":
        if result.reason == "no_consent":
            # WeChat says there is none left: our count was wrong, believe WeChat.
            await Subscription.filter(resident_id=resident_id, channel=row.channel,
                                      template_id=str(message.get("template_id"))).update(remaining=0)
        return await _finish(row, NotifyStatus.PERMANENT_FAILURE, reason=result.reason, policy=policy,
                             answer=result.answer)
    summary = _summary(row, result)
    if event.attempt >= policy.max_attempts:
        await _finish(row, NotifyStatus.PERMANENT_FAILURE, reason="retries_exhausted", policy=policy,
                      answer=result.answer)
        raise DeliveryFailed(f"{summary} (attempts exhausted)")
    await Notification.filter(id=row.id).update(status=NotifyStatus.TEMPORARY_FAILURE, provider_answer=result.answer,
                                                reason=result.reason)
    raise DeliveryFailed(summary)


def _summary(row: Notification, result: SendResult) -> str:
    answer = {k: v for k, v in result.answer.items() if k not in ("RequestId",)}
    return f"notification {row.id} {row.channel.value}: {answer}"


async def _target(row: Notification, policy: Policy) -> str | None:
    resident_id = int(row.resident_id or 0)
    if row.channel == NotifyChannel.SMS:
        enc = await context.phone_enc(resident_id)
        if enc is None or policy.keyring is None:
            return None
        # Decrypted here and only here, for the one text that needs it; never stored or logged.
        return policy.keyring.decrypt(enc, aad="resident.phone")
    return (await context.channels_of(resident_id)).get(row.channel.value)


async def _finish(row: Notification, status: NotifyStatus, *, reason: str | None, policy: Policy,
                  answer: dict[str, Any] | None = None, fallback: bool = True) -> NotifyStatus:
    changes: dict[str, Any] = {"status": status, "reason": (reason or "")[:64] or None}
    if answer is not None:
        changes["provider_answer"] = answer
    await Notification.filter(id=row.id).update(**changes)
    if fallback:
        await _fall_back(row, policy=policy)
    return status


async def _fall_back(row: Notification, *, policy: Policy, using_db: Any = None) -> None:
    """The next channel of the row's chain gets the message (SMS is in the chain of required ones only).

    With `using_db` it joins the caller's transaction (a delivery receipt's), else it makes its own.
    """
    chain: list[str] = row.content.get("chain", [])
    if row.channel.value not in chain:
        return
    rest = chain[chain.index(row.channel.value) + 1:]
    if not rest:
        return
    if using_db is not None:
        if not await Notification.filter(event_id=row.event_id, recipient=row.recipient,
                                         channel=NotifyChannel(rest[0])).using_db(using_db).exists():
            await _create_next(row, NotifyChannel(rest[0]), policy=policy, using_db=using_db)
        return
    try:
        async with db.transaction() as tx:
            await _create_next(row, NotifyChannel(rest[0]), policy=policy, using_db=tx)
    except IntegrityError:
        pass  # fallen back before


async def _create_next(row: Notification, channel: NotifyChannel, *, policy: Policy, using_db: Any) -> None:
    nxt = await Notification.create(
        event_id=row.event_id, topic=row.topic, recipient=row.recipient, resident_id=row.resident_id,
        channel=channel, template=row.template, required=row.required,
        content=row.content, event_at_ms=row.event_at_ms, using_db=using_db)
    await _schedule(nxt, policy=policy, using_db=using_db)


# ---- delivery receipts -------------------------------------------------------------------------

# A receipt that names a send we have not recorded yet waits here for it (see `deliver`).
EARLY_PREFIX = "palmhall:notify:early:"
EARLY_TTL_SECONDS = 600
# Receipts come within minutes of the send; older rows are not looked at. The look-up goes by the
# (channel, provider_id) index.
RECEIPT_WINDOW = timedelta(days=3)
RECEIPT_STATES = (NotifyStatus.SENT, NotifyStatus.DELIVERED, NotifyStatus.PERMANENT_FAILURE)


@dataclass(frozen=True)
class DeliveryReport:
    """What a platform said became of one message it accepted: delivered, or not and why."""

    channel: NotifyChannel
    provider_id: str  # the msgid / BizId the send answered with
    delivered: bool
    reason: str | None  # one word when not delivered: user_refused, UNDELIV, ...
    answer: dict[str, Any]  # the receipt as the platform said it, without personal data

    def dumps(self) -> str:
        return json.dumps({"channel": self.channel.value, "provider_id": self.provider_id,
                           "delivered": self.delivered, "reason": self.reason, "answer": self.answer},
                          ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str | bytes) -> DeliveryReport:
        d = json.loads(raw)
        return cls(channel=NotifyChannel(d["channel"]), provider_id=str(d["provider_id"]),
                   delivered=bool(d["delivered"]), reason=d.get("reason"), answer=dict(d.get("answer") or {}))


def _early_key(channel: NotifyChannel, provider_id: str) -> str:
    return f"{EARLY_PREFIX}{channel.value}:{provider_id}"


async def record_receipts(reports: list[DeliveryReport], *, policy: Policy, redis: Redis) -> dict[str, int]:
    """Apply verified delivery receipts; the same receipt twice changes nothing the second time."""
    counts = {"delivered": 0, "failed": 0, "unchanged": 0, "early": 0}
    for report in reports:
        status, moved = await _apply_receipt(report, policy=policy)
        if status is None:
            # Not (yet) a send we know: kept a while in case the sending worker has not recorded it.
            await redis.set(_early_key(report.channel, report.provider_id), report.dumps(), ex=EARLY_TTL_SECONDS)
            counts["early"] += 1
        elif not moved:
            counts["unchanged"] += 1
        elif status == NotifyStatus.DELIVERED:
            counts["delivered"] += 1
        else:
            counts["failed"] += 1
    return counts


async def apply_receipt(report: DeliveryReport, *, policy: Policy) -> NotifyStatus | None:
    """Move a sent row to delivered or permanent_failure (and on to the next channel when it must arrive).

    None when no sent row has that provider id; the row's status, unchanged, when it moved before.
    """
    return (await _apply_receipt(report, policy=policy))[0]


async def _apply_receipt(report: DeliveryReport, *, policy: Policy) -> tuple[NotifyStatus | None, bool]:
    row = await Notification.filter(
        channel=report.channel, provider_id=report.provider_id, status__in=list(RECEIPT_STATES),
        # updated_at is stamped by the ORM's clock, so the window is measured by the same one.
        updated_at__gte=timezone.now() - RECEIPT_WINDOW).order_by("-id").first()
    if row is None:
        return None, False
    to = NotifyStatus.DELIVERED if report.delivered else NotifyStatus.PERMANENT_FAILURE
    answer = {**(row.provider_answer or {}), "receipt": report.answer}
    async with db.transaction() as tx:
        # Only a row still `sent` moves: a second copy of the receipt finds it moved and changes nothing.
        reason = None if report.delivered else (report.reason or "undelivered")[:64]
        moved = await Notification.filter(id=row.id, status=NotifyStatus.SENT).using_db(tx).update(
            status=to, provider_answer=answer, reason=reason)
        if not moved:
            return row.status, False
        await audit.record(using_db=tx, actor_kind="platform", actor_id=report.channel.value,
                           action="notification.delivered" if report.delivered else "notification.undelivered",
                           target_kind="notification", target_id=row.id,
                           details={"provider_id": report.provider_id, "reason": report.reason})
        if not report.delivered:
            # As when the send itself fails for good: a notice the law requires goes on to the next channel.
            await _fall_back(row, policy=policy, using_db=tx)
    return to, True


# ---- consent ---------------------------------------------------------------------------------


async def take_consent(*, resident_id: int, channel: NotifyChannel, template_id: str) -> bool:
    """Use one one-time acceptance (atomically), or check a long-term subscription."""
    sub = await Subscription.get_or_none(resident_id=resident_id, channel=channel, template_id=template_id)
    if sub is None:
        return False
    if sub.kind == SubscriptionKind.LONG_TERM:
        return sub.last_answer == "accept"
    used = await Subscription.filter(id=sub.id, remaining__gt=0).update(remaining=F("remaining") - 1)
    return bool(used)


async def _give_back_consent(row: Notification, message: dict[str, Any]) -> None:
    if row.consent_taken and row.channel in (NotifyChannel.WECHAT, NotifyChannel.ALIPAY):
        template_id = str(message.get("template_id") or message.get("user_template_id"))
        await Subscription.filter(resident_id=row.resident_id, channel=row.channel, template_id=template_id,
                                  kind=SubscriptionKind.ONE_TIME).update(remaining=F("remaining") + 1)
        await Notification.filter(id=row.id).update(consent_taken=False)


async def record_subscriptions(*, resident_id: int, channel: NotifyChannel, results: dict[str, str],
                               policy: Policy) -> dict[str, Any]:
    """What wx.requestSubscribeMessage returned: each `accept` of a one-time template allows one more message."""
    known = policy.catalogue.by_provider_id(channel.value)
    recorded: list[dict[str, Any]] = []
    ignored: list[str] = []
    for template_id, answer in results.items():
        template = known.get(template_id)
        if template is None or answer not in ("accept", "reject", "ban"):
            ignored.append(template_id)  # "filter" (hidden by WeChat) or a template we do not send
            continue
        spec = getattr(template, channel.value) or {}
        kind = SubscriptionKind(spec.get("subscription", SubscriptionKind.ONE_TIME.value))
        if not await Subscription.filter(resident_id=resident_id, channel=channel, template_id=template_id).exists():
            try:
                await Subscription.create(resident_id=resident_id, channel=channel, template_id=template_id,
                                          kind=kind, remaining=0, last_answer=answer)
            except IntegrityError:
                pass  # the same answer posted twice at once: the other request made the row
        # Counted in SQL: two acceptances recorded at once are two acceptances.
        added = 1 if kind == SubscriptionKind.ONE_TIME and answer == "accept" else 0
        # A refusal or a ban ends a long-term subscription; one-time acceptances not yet used stay usable.
        await Subscription.filter(resident_id=resident_id, channel=channel, template_id=template_id).update(
            remaining=F("remaining") + added, last_answer=answer, kind=kind)
        recorded.append({"template_id": template_id, "answer": answer, "topic": template.topic})
    return {"recorded": recorded, "ignored": ignored, "subscriptions": await subscriptions(resident_id=resident_id)}


async def subscriptions(*, resident_id: int) -> list[dict[str, Any]]:
    rows = await Subscription.filter(resident_id=resident_id).order_by("channel", "template_id")
    return [{"channel": r.channel.value, "template_id": r.template_id, "kind": r.kind.value,
             "remaining": r.remaining if r.kind == SubscriptionKind.ONE_TIME else None,
             "active": (r.remaining > 0) if r.kind == SubscriptionKind.ONE_TIME else r.last_answer == "accept"}
            for r in rows]


# ---- preferences -------------------------------------------------------------------------------


async def category_enabled(*, resident_id: int, category: str) -> bool:
    return not await Preference.filter(resident_id=resident_id, category=category, enabled=False).exists()


async def preferences(*, resident_id: int, policy: Policy) -> list[dict[str, Any]]:
    off = set(await Preference.filter(resident_id=resident_id, enabled=False).values_list("category", flat=True))
    return [{"key": c.key, "name": c.name, "required": c.required, "enabled": c.required or c.key not in off}
            for c in policy.catalogue.categories.values()]


async def set_preferences(*, resident_id: int, changes: dict[str, bool], policy: Policy) -> list[dict[str, Any]]:
    cats = policy.catalogue.categories
    for key, enabled in changes.items():
        if key not in cats:
            raise DomainError("notify.unknown_category", details={"category": key})
        if cats[key].required and not enabled:
            raise DomainError("notify.category_required", details={"category": key})
    async with db.transaction() as tx:
        for key, enabled in changes.items():
            updated = await Preference.filter(resident_id=resident_id, category=key).using_db(tx).update(
                enabled=enabled)
            if not updated:
                await Preference.create(resident_id=resident_id, category=key, enabled=enabled, using_db=tx)
    return await preferences(resident_id=resident_id, policy=policy)


# ---- inboxes ------------------------------------------------------------------------------------


def _inbox_item(n: Notification) -> dict[str, Any]:
    c = n.content or {}
    return {"id": n.id, "topic": n.topic, "title": c.get("title", ""), "body": c.get("body", ""),
            "page": c.get("page"), "hall_id": n.hall_id, "read": n.read_at is not None,
            "created_at": n.created_at.isoformat()}


async def inbox(*, resident_id: int, unread_only: bool = False, limit: int = 50, before_id: int | None = None
                ) -> dict[str, Any]:
    """One page of the resident's messages, newest first: `total` counts the messages shown (all, or the unread
    ones), `before_id` is where the page starts, and `next_before_id` where the next one does (None at the end)."""
    query = Notification.filter(resident_id=resident_id, channel=NotifyChannel.INBOX)
    unread = await query.filter(read_at__isnull=True).count()
    if unread_only:
        query = query.filter(read_at__isnull=True)
    total = unread if unread_only else await query.count()
    page = query.filter(id__lt=before_id) if before_id is not None else query
    rows = await page.order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [_inbox_item(n) for n in rows], "unread": unread, "total": total, "limit": limit,
            "before_id": before_id, "next_before_id": rows[-1].id if more else None}


async def mark_read(*, resident_id: int, notification_id: int | None) -> int:
    """One message (another resident's is 'not found'), or all of them when `notification_id` is None."""
    query = Notification.filter(resident_id=resident_id, channel=NotifyChannel.INBOX)
    if notification_id is not None:
        if not await query.filter(id=notification_id).exists():
            raise DomainError("notify.not_found")
        query = query.filter(id=notification_id)
    return await query.filter(read_at__isnull=True).update(read_at=clock.now())


async def staff_inbox(*, hall_ids: set[int], unread_only: bool = False, limit: int = 50) -> dict[str, Any]:
    query = Notification.filter(hall_id__in=sorted(hall_ids), channel=NotifyChannel.STAFF_INBOX)
    unread = await query.filter(read_at__isnull=True).count()
    if unread_only:
        query = query.filter(read_at__isnull=True)
    rows = await query.order_by("-id").limit(limit)
    return {"items": [_inbox_item(n) for n in rows], "unread": unread}


async def staff_mark_read(*, hall_ids: set[int], notification_id: int) -> None:
    query = Notification.filter(id=notification_id, hall_id__in=sorted(hall_ids), channel=NotifyChannel.STAFF_INBOX)
    if not await query.exists():
        raise DomainError("notify.not_found")
    await query.filter(read_at__isnull=True).update(read_at=clock.now())


# ---- operators ----------------------------------------------------------------------------------


def _pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


async def stats(*, since: datetime) -> dict[str, Any]:
    """Counts by channel, template and state, and p50/p99 seconds from event commit to sent, per channel."""
    rows = await Notification.filter(created_at__gte=since).annotate(n=Count("id")).group_by(
        "channel", "template", "status").values("channel", "template", "status", "n")
    counts = [{"channel": str(r["channel"]), "template": r["template"], "status": str(r["status"]), "n": int(r["n"])}
              for r in sorted(rows, key=lambda r: (str(r["channel"]), r["template"], str(r["status"])))]
    lag: dict[str, dict[str, Any]] = {}
    for channel in PUSH_CHANNELS:
        pairs = await Notification.filter(created_at__gte=since, channel=channel, sent_at_ms__isnull=False).values_list(
            "event_at_ms", "sent_at_ms")
        lags = sorted(int(s) - int(e) for e, s in pairs)
        if lags:
            delivered = await Notification.filter(created_at__gte=since, channel=channel,
                                                  status=NotifyStatus.DELIVERED).count()
            lag[channel.value] = {"sent": len(lags), "delivered": delivered,
                                  "p50_seconds": (_pct(lags, 50) or 0) / 1000,
                                  "p99_seconds": (_pct(lags, 99) or 0) / 1000}
    return {"since": since.isoformat(), "counts": counts, "lag": lag}


async def retry_failed(*, since: datetime, policy: Policy) -> list[int]:
    """Failed messages since `since` are queued again (their consent, if used, stays with them)."""
    rows = await Notification.filter(updated_at__gte=since, channel__in=list(PUSH_CHANNELS),
                                     status__in=[NotifyStatus.PERMANENT_FAILURE, NotifyStatus.TEMPORARY_FAILURE])
    again: list[int] = []
    for row in rows:
        async with db.transaction() as tx:
            moved = await Notification.filter(id=row.id, status=row.status).using_db(tx).update(
                status=NotifyStatus.CREATED, attempts=0, reason=None)
            if moved:
                await _schedule(row, policy=policy, using_db=tx)
                again.append(row.id)
    return again
