"""Cases (办件): uploads, applying, pre-review and corrections, counter work, progress, payment hand-off."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from backend import clock, db, qr
from backend.audit import service as audit
from backend.cases import certificates, deadlines, events
from backend.cases.files import FileStore, check_file
from backend.cases.models import (
    Case,
    CaseChannel,
    CaseHistory,
    CaseMaterial,
    CaseStatus,
    Certificate,
    CorrectionNotice,
    CorrectionRequest,
    DeliveryMethod,
    MaterialSource,
    NoticeRequestState,
    Upload,
    WarningLevel,
)
from backend.cases.schemas import (
    Action,
    CaseIn,
    CorrectionIn,
    MaterialIn,
    NoticeDecisionIn,
    NoticeItemIn,
    NoticeRequestIn,
    TransitionIn,
    WalkInCaseIn,
)
from backend.cases.statemachine import COMPLETED, PAYMENT, RESIDENT, STAFF, SYSTEM, Actor, allowed, transition
from backend.catalog import service as catalog
from backend.crypto import KeyRing, blind_index
from backend.errors import DomainError, register_codes
from backend.identity import service as identity
from backend.identity.models import StaffRole
from backend.identity.personal import StoredIdentifier, mask_id_number, mask_name, read_stored
from backend.identity.service import StaffPrincipal
from backend.jobs import outbox

register_codes({
    "case.not_found": (404, "未找到该办件"),
    "case.hall_not_serving": (422, "该服务大厅不办理此事项"),
    "case.channel_not_offered": (422, "该事项不能通过此渠道申请"),
    "case.unknown_material": (422, "材料不在该事项的材料清单中"),
    "case.material_not_found": (404, "未找到可复用的材料"),
    "case.certificate_not_usable": (422, "该电子证照不能用于此项材料（类型不符或已失效）"),
    "case.certificate_not_found": (404, "未找到本人的这个电子证照"),
    "case.paper_counter_only": (422, "纸质材料只能在窗口提交"),
    "case.correction_incomplete": (422, "补正材料不齐全，请按告知清单全部提交"),
    "case.reason_required": (422, "请填写理由"),
    "case.tracking_required": (422, "邮寄送达须填写快递单号"),
    "case.notice_items_required": (422, "请列出需要补正的材料"),
    "case.material_file_not_found": (404, "未找到该材料文件"),
    "case.notice_needs_approval": (409, "该办件已一次性告知且申请人已按告知补正，再次告知须经大厅管理员批准："
                                        "请提交再次告知申请并说明理由"),
    "case.notice_approval_not_needed": (409, "该办件无需审批，可直接发出或补充补正告知"),
    "case.notice_request_pending": (409, "该办件已有待大厅管理员审批的再次告知申请"),
    "case.notice_request_not_found": (404, "未找到该再次告知申请"),
    "case.notice_request_decided": (409, "该再次告知申请已审批，不能再次处理"),
    "case.notice_own_request": (403, "不能审批本人提交的再次告知申请，请由其他大厅管理员审批"),
    "upload.daily_limit": (429, "今日上传次数已达上限，请明天再试"),
})

CLERKS = (StaffRole.CLERK, StaffRole.HALL_ADMIN)
READERS = (StaffRole.CLERK, StaffRole.HALL_ADMIN, StaffRole.AUDITOR)

STATUS_LABELS = {
    CaseStatus.DRAFT: "草稿", CaseStatus.SUBMITTED: "已提交，待受理", CaseStatus.NEEDS_CORRECTION: "待补正",
    CaseStatus.ACCEPTED: "已受理", CaseStatus.IN_REVIEW: "审查中", CaseStatus.AWAITING_PAYMENT: "待缴费",
    CaseStatus.APPROVED: "审批通过", CaseStatus.REJECTED: "不予办理", CaseStatus.CERTIFICATE_ISSUED: "已出证",
    CaseStatus.DELIVERED: "已送达", CaseStatus.CLOSED: "已办结", CaseStatus.WITHDRAWN: "已撤回",
}


# ---- who applies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Applicant:
    """The person a case is for. `person_hash` is the keyed hash of the ID number (blind index)."""

    resident_id: int | None
    name: str
    id_number: str
    person_hash: str


async def resident_applicant(*, resident_id: int, keyring: KeyRing) -> Applicant:
    """A resident applies in their own name: real-name verification comes first."""
    resident = await identity.get_resident(resident_id=resident_id)
    if resident.verified_at is None or resident.id_number_hash is None:
        raise DomainError("identity.not_verified")
    return Applicant(
        resident_id=resident.id,
        name=keyring.decrypt(resident.name_enc or "", aad="resident.name"),
        id_number=keyring.decrypt(resident.id_number_enc or "", aad="resident.id_number"),
        person_hash=resident.id_number_hash,
    )


def walk_in_applicant(*, name: str, id_number: str, hash_key: str) -> Applicant:
    # The same keyed hash a resident's binding stores, so the case reaches their account.
    return Applicant(resident_id=None, name=name, id_number=id_number,
                     person_hash=blind_index(hash_key, "id_number", id_number))


async def _person_hash(resident_id: int) -> str | None:
    resident = await identity.get_resident(resident_id=resident_id)
    return resident.id_number_hash


async def own_certificates(*, resident_id: int, keyring: KeyRing, secret: str, base_url: str, limit: int = 20,
                           offset: int = 0) -> dict[str, Any]:
    """One page of the e-certificates this resident holds (issued on cases in their name, wherever they applied)
    and how many there are."""
    person_hash = await _person_hash(resident_id)
    rows = await certificates.list_for_holder(resident_id=resident_id, person_hash=person_hash, keyring=keyring,
                                              secret=secret, base_url=base_url, limit=limit, offset=offset)
    total = await certificates.count_for_holder(resident_id=resident_id, person_hash=person_hash)
    return {"certificates": rows, "total": total, "limit": limit, "offset": offset}


def _owner_filter(resident_id: int, person_hash: str | None) -> Q:
    q = Q(resident_id=resident_id)
    return q | Q(applicant_hash=person_hash) if person_hash else q


# ---- uploads --------------------------------------------------------------------------------


async def store_upload(*, resident_id: int, data: bytes, name: str | None, store: FileStore, max_bytes: int,
                       max_pixels: int, daily_limit: int) -> dict[str, Any]:
    """Check the file by its bytes, keep it under its hash, and record it as this resident's."""
    # A scan of up to UPLOAD_MAX_BYTES: off the event loop, so other requests are not kept waiting.
    checked = await asyncio.to_thread(check_file, data, name=name, max_bytes=max_bytes, max_pixels=max_pixels)
    today = deadlines.today()
    if await Upload.filter(resident_id=resident_id, day=today).count() >= daily_limit:
        raise DomainError("upload.daily_limit", details={"limit": daily_limit})
    await store.put(checked.sha256, data, checked.content_type)
    async with db.transaction() as tx:
        upload = await Upload.create(resident_id=resident_id, sha256=checked.sha256, size=checked.size,
                                     content_type=checked.content_type, display_name=checked.display_name,
                                     day=today, using_db=tx)
        await audit.record(using_db=tx, actor_kind="resident", actor_id=resident_id, action="upload.stored",
                           target_kind="upload", target_id=upload.id,
                           details={"sha256": checked.sha256, "size": checked.size, "type": checked.content_type})
    return _upload_out(upload)


def _upload_out(u: Upload) -> dict[str, Any]:
    return {"id": u.id, "name": u.display_name, "content_type": u.content_type, "size": u.size,
            "sha256": u.sha256, "created_at": u.created_at.isoformat()}


async def own_upload(*, resident_id: int, upload_id: int) -> dict[str, Any]:
    """Another resident's upload is 'not found', never 'forbidden'."""
    upload = await Upload.get_or_none(id=upload_id, resident_id=resident_id)
    if upload is None:
        raise DomainError("upload.not_found")
    return _upload_out(upload)


async def upload_content(*, resident_id: int, upload_id: int, store: FileStore) -> tuple[bytes, str]:
    upload = await Upload.get_or_none(id=upload_id, resident_id=resident_id)
    if upload is None:
        raise DomainError("upload.not_found")
    return await store.get(upload.sha256), upload.content_type


# ---- the material library -------------------------------------------------------------------


def _reusable_query(person_hash: str, resident_id: int | None) -> QuerySet[CaseMaterial]:
    """Files of this person's earlier cases that a clerk accepted, newest first."""
    owner = Q(case__applicant_hash=person_hash)
    if resident_id is not None:
        owner |= Q(case__resident_id=resident_id)
    return CaseMaterial.filter(owner, case__accepted_at__isnull=False, upload_id__isnull=False,
                               superseded=False).order_by("-id")


async def _reusable(person_hash: str, resident_id: int | None, using_db: BaseDBAsyncClient | None = None
                    ) -> list[CaseMaterial]:
    return await _reusable_query(person_hash, resident_id).using_db(using_db).prefetch_related("upload", "case")


async def material_library(*, resident_id: int, item_code: str | None, keyring: KeyRing, secret: str,
                           base_url: str, limit: int = 20, offset: int = 0) -> dict[str, Any]:
    """What this resident can attach without uploading again: one page of accepted materials (with their
    `total`), and every current e-certificate."""
    person_hash = await _person_hash(resident_id)
    checklist: list[dict[str, Any]] = []
    if item_code:
        checklist = list((await catalog.item_version(code=item_code)).materials)
    by_name: dict[str, list[str]] = defaultdict(list)
    by_cert: dict[str, list[str]] = defaultdict(list)
    for entry in checklist:
        by_name[entry["name"]].append(entry["code"])
        if entry.get("certificate_type"):
            by_cert[entry["certificate_type"]].append(entry["code"])
    # The same file accepted twice under the same name is offered once (the newest): told apart on light rows
    # of every candidate, then only the page's rows are read whole.
    seen: set[tuple[str, str]] = set()
    offered: list[int] = []
    for row_id, name, sha256 in await _reusable_query(person_hash or "", resident_id).values_list(
            "id", "name", "upload__sha256"):
        if (name, sha256) not in seen:
            seen.add((name, sha256))
            offered.append(row_id)
    page = offered[offset:offset + limit]
    rows = {m.id: m for m in await CaseMaterial.filter(id__in=page).prefetch_related("upload", "case")} if page else {}
    materials = []
    for m in (rows[i] for i in page):
        upload: Upload = m.upload  # type: ignore[assignment]
        materials.append({
            "reuse_id": m.id, "name": m.name, "code": m.code, "file_name": upload.display_name,
            "content_type": upload.content_type, "size": upload.size, "from_case": m.case.case_no,
            "accepted_at": m.case.accepted_at.isoformat() if m.case.accepted_at else None,
            "suggested_for": by_name.get(m.name, []),
        })
    certs = await certificates.list_for_holder(resident_id=resident_id, person_hash=person_hash, keyring=keyring,
                                               secret=secret, base_url=base_url)
    usable = [{**c, "suggested_for": by_cert.get(c["cert_type"], [])} for c in certs if c["status"] == "genuine"]
    return {"materials": materials, "total": len(offered), "limit": limit, "offset": offset, "certificates": usable}


# ---- applying -------------------------------------------------------------------------------


async def _next_case_no(hall_id: int, region_code: str, day: date, using_db: BaseDBAsyncClient) -> str:
    """Region + date + serial, the serial counted atomically per hall per day (one upsert, any number of writers)."""
    postgres = using_db.capabilities.dialect == "postgres"
    marks = ("$1", "$2") if postgres else ("?", "?")  # only placeholders are interpolated below
    sql = (f"INSERT INTO case_serial (hall_id, day, last_serial) VALUES ({marks[0]}, {marks[1]}, 1) "  # noqa: S608
           "ON CONFLICT (hall_id, day) DO UPDATE SET last_serial = case_serial.last_serial + 1 "
           "RETURNING last_serial")
    # execute_query_dict, because the asyncpg client's execute_query drops the rows of an INSERT.
    rows = await using_db.execute_query_dict(sql, [hall_id, day if postgres else day.isoformat()])
    serial = int(rows[0]["last_serial"])
    return f"{region_code}{day:%Y%m%d}{serial:05d}"


def _checklist(version: Any) -> dict[str, dict[str, Any]]:
    return {m["code"]: m for m in version.materials}


async def _resolve_materials(items: list[MaterialIn], *, checklist: dict[str, dict[str, Any]],
                             applicant: Applicant, channel: CaseChannel, using_db: BaseDBAsyncClient,
                             ) -> list[dict[str, Any]]:
    """Each given material as CaseMaterial columns, or a clear refusal naming the material."""
    unknown = sorted({m.code for m in items if m.code not in checklist})
    if unknown:
        raise DomainError("case.unknown_material", details={"codes": unknown})
    out = []
    for m in items:
        entry = checklist[m.code]
        row: dict[str, Any] = {"code": m.code, "name": entry["name"], "required": bool(entry.get("required", True))}
        if m.upload_id is not None:
            owned = applicant.resident_id is not None and await Upload.filter(
                id=m.upload_id, resident_id=applicant.resident_id).using_db(using_db).exists()
            if not owned:
                raise DomainError("upload.not_found", details={"code": m.code, "upload_id": m.upload_id})
            row.update(source=MaterialSource.UPLOAD, upload_id=m.upload_id)
        elif m.reuse_id is not None:
            earlier = {x.id: x for x in await _reusable(applicant.person_hash, applicant.resident_id, using_db)}
            found = earlier.get(m.reuse_id)
            if found is None:
                raise DomainError("case.material_not_found", details={"code": m.code, "reuse_id": m.reuse_id})
            row.update(source=MaterialSource.REUSE, upload_id=found.upload_id,  # type: ignore[attr-defined]
                       reused_from_id=found.id)
        elif m.certificate_id is not None:
            cert = await certificates.held(certificate_id=m.certificate_id, person_hash=applicant.person_hash,
                                           using_db=using_db)
            if cert is None:
                # Another person's certificate is "not found", like one that does not exist (as for uploads and
                # reuse); only the applicant's own can be "not usable" (another type, expired, revoked).
                raise DomainError("case.certificate_not_found",
                                  details={"code": m.code, "certificate_id": m.certificate_id})
            if not certificates.usable(cert, cert_type=entry.get("certificate_type")):
                raise DomainError("case.certificate_not_usable",
                                  details={"code": m.code, "certificate_id": m.certificate_id})
            row.update(source=MaterialSource.CERTIFICATE, certificate_id=cert.id)
        else:
            if channel != CaseChannel.COUNTER:
                raise DomainError("case.paper_counter_only", details={"code": m.code})
            row.update(source=MaterialSource.PAPER)
        out.append(row)
    return out


async def _missing(case: Case, checklist: dict[str, dict[str, Any]], using_db: BaseDBAsyncClient
                   ) -> list[dict[str, Any]]:
    have = set(await CaseMaterial.filter(case_id=case.id, superseded=False).using_db(using_db)
               .values_list("code", flat=True))
    return [{"code": code, "name": e["name"], "reason": "未提交"}
            for code, e in checklist.items() if e.get("required", True) and code not in have]


async def _open_notice(case: Case, items: list[dict[str, Any]], *, actor: Actor, using_db: BaseDBAsyncClient,
                       resume: CaseStatus | None, note: str = "", created_by: str | None = None,
                       request: CorrectionRequest | None = None) -> CorrectionNotice:
    """Start a correction round: the complete list in one notice (一次性告知), and the clock stops.

    `request` is the hall admin's approval of a further notice (再次告知) after an answered one."""
    round_no = case.correction_round + 1
    repeat = await _answered_clerk_notice(case, using_db)
    notice = await CorrectionNotice.create(case_id=case.id, round=round_no, items=items, note=note,
                                           created_by=created_by or actor.label, created_at=clock.now(),
                                           repeat=repeat, request_id=request.id if request else None,
                                           using_db=using_db)
    names = "、".join(i["name"] for i in items)
    reason = f"请补正：{names}"
    if request is not None:
        reason = f"经大厅管理员批准再次告知。{reason}"
    moved = await transition(case, CaseStatus.NEEDS_CORRECTION, actor=actor, using_db=using_db, reason=reason,
                             changes={"correction_round": round_no, "resume_status": resume},
                             event_extra={"round": round_no, "codes": [i["code"] for i in items]})
    notice.announced_event_id = moved.entry_event_id
    await notice.save(using_db=using_db, update_fields=["announced_event_id"])
    return notice


def _clerk_had_a_hand(notice: CorrectionNotice) -> bool:
    """A notice a person at a hall wrote or added to (not only the automatic pre-review of missing materials)."""
    return notice.created_by.startswith(f"{STAFF}:") or any(
        str(i.get("added_by", "")).startswith(f"{STAFF}:") for i in notice.items)


async def _answered_clerk_notice(case: Case, using_db: BaseDBAsyncClient | None) -> bool:
    """Has the resident answered a notice a clerk had a hand in? Then the one-time notice was given: another one
    is a repeat (再次告知), which a clerk may send only with a hall admin's approval."""
    answered = await CorrectionNotice.filter(case_id=case.id, answered_at__isnull=False).using_db(using_db)
    return any(_clerk_had_a_hand(n) for n in answered)


async def _pre_review(case: Case, checklist: dict[str, dict[str, Any]], using_db: BaseDBAsyncClient) -> None:
    """Automatic pre-review (预审) against the pinned checklist."""
    missing = await _missing(case, checklist, using_db)
    if missing:
        await _open_notice(case, missing, actor=Actor(SYSTEM, "pre_review"), using_db=using_db, resume=None)


async def apply(*, payload: CaseIn, applicant: Applicant, channel: CaseChannel, actor: Actor,
                keyring: KeyRing, owner_id: int | None = None) -> Case:
    """Create, submit and pre-review a case in one transaction.

    `owner_id` is the resident a walk-in case belongs to (the verified holder of the applicant's ID number); the
    applicant's own uploads stay out of reach of the counter either way (`applicant.resident_id` is None)."""
    version = await catalog.item_version(code=payload.item_code)
    hall = await catalog.get_hall(hall_id=payload.hall_id)
    guide = await catalog.get_guide(code=payload.item_code)
    if hall.id not in {h["id"] for h in guide["halls"]}:
        raise DomainError("case.hall_not_serving", details={"hall_id": hall.id, "item_code": guide["code"]})
    if version.channels and channel.value not in version.channels:
        raise DomainError("case.channel_not_offered", details={"channel": channel.value})
    checklist = _checklist(version)
    fee_total = sum(int(f.get("amount_fen", 0)) for f in version.fees)
    d = payload.delivery
    address = None
    if d.method == "post":
        address = keyring.encrypt(json.dumps({"recipient": d.recipient, "phone": d.phone, "address": d.address},
                                             ensure_ascii=False), aad="case.delivery_address")
    async with db.transaction() as tx:
        materials = await _resolve_materials(payload.materials, checklist=checklist, applicant=applicant,
                                             channel=channel, using_db=tx)
        now = clock.now()
        case = await Case.create(
            case_no=await _next_case_no(hall.id, hall.region_code, deadlines.local_day(now), tx),
            resident_id=applicant.resident_id or owner_id, applicant_hash=applicant.person_hash,
            applicant_name_enc=keyring.encrypt(applicant.name, aad="case.applicant_name"),
            applicant_id_number_enc=keyring.encrypt(applicant.id_number, aad="case.applicant_id_number"),
            hall_id=hall.id, item_id=version.item_id, item_version_id=version.id,  # type: ignore[attr-defined]
            channel=channel, form_enc=keyring.encrypt(json.dumps(payload.form, ensure_ascii=False), aad="case.form"),
            delivery_method=DeliveryMethod(d.method), delivery_address_enc=address, created_by=actor.label,
            has_fees=fee_total > 0, fee_total_fen=fee_total, certificate_type=version.certificate_type,
            statutory_days=version.statutory_days, promised_days=version.promised_days, using_db=tx,
        )
        for row in materials:
            await CaseMaterial.create(case_id=case.id, **row, using_db=tx)
        if applicant.resident_id is None and owner_id is not None:
            await audit.record(using_db=tx, actor_kind=actor.kind, actor_id=actor.id, action="case.owner_linked",
                               target_kind="case", target_id=case.case_no,
                               details={"resident_id": owner_id, "how": "opened_for_verified_resident"})
        await transition(case, CaseStatus.SUBMITTED, actor=actor, using_db=tx,
                         reason="窗口代为申请" if channel == CaseChannel.COUNTER else "")
        await _pre_review(case, checklist, tx)
    return case


# ---- the resident's side --------------------------------------------------------------------


async def owned_case(resident_id: int, case_no: str, using_db: BaseDBAsyncClient | None = None) -> Case:
    """The resident's case (applied by them, or opened at a counter with their ID number): else 404."""
    person_hash = await _person_hash(resident_id)
    case = await Case.filter(_owner_filter(resident_id, person_hash), case_no=case_no).using_db(using_db).first()
    if case is None:
        raise DomainError("case.not_found")
    return case


async def apply_as_resident(*, resident_id: int, payload: CaseIn, channel: CaseChannel, keyring: KeyRing,
                            secret: str, base_url: str) -> dict[str, Any]:
    """A resident applies in their own name (mini program, or a kiosk they identified themselves at)."""
    applicant = await resident_applicant(resident_id=resident_id, keyring=keyring)
    case = await apply(payload=payload, applicant=applicant, channel=channel,
                       actor=Actor(RESIDENT, str(resident_id)), keyring=keyring)
    return await _full(case, keyring=keyring, secret=secret, base_url=base_url)


async def list_own(*, resident_id: int, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """One page of the resident's cases, newest first, and how many there are."""
    person_hash = await _person_hash(resident_id)
    query = Case.filter(_owner_filter(resident_id, person_hash))
    rows = await (query.order_by("-id").offset(offset).limit(limit)
                  .prefetch_related("item", "item_version", "hall"))
    return {"cases": [_summary(c) for c in rows], "total": await query.count(), "limit": limit, "offset": offset}


async def own_case(*, resident_id: int, case_no: str, keyring: KeyRing, secret: str, base_url: str
                   ) -> dict[str, Any]:
    case = await owned_case(resident_id, case_no)
    return await _full(case, keyring=keyring, secret=secret, base_url=base_url)


async def answer_correction(*, resident_id: int, case_no: str, payload: CorrectionIn, keyring: KeyRing,
                            secret: str, base_url: str) -> dict[str, Any]:
    """The resident hands in everything the open notice lists; the case goes back where it was."""
    actor = Actor(RESIDENT, str(resident_id))
    async with db.transaction() as tx:
        case = await owned_case(resident_id, case_no, tx)
        if case.status != CaseStatus.NEEDS_CORRECTION:
            raise DomainError("case.illegal_transition",
                              details={"from": case.status.value, "to": CaseStatus.SUBMITTED.value})
        notice = await CorrectionNotice.filter(case_id=case.id, round=case.correction_round).using_db(tx).get()
        given = {m.code for m in payload.materials}
        missing = [i for i in notice.items if i["code"] not in given]
        if missing:
            raise DomainError("case.correction_incomplete", details={"missing": missing})
        version = await case.item_version.using_db(tx)  # type: ignore[attr-defined]
        applicant = Applicant(resident_id=resident_id, name="", id_number="", person_hash=case.applicant_hash)
        rows = await _resolve_materials(payload.materials, checklist=_checklist(version), applicant=applicant,
                                        channel=case.channel, using_db=tx)
        # What was handed in before for these entries is replaced, not added to.
        await CaseMaterial.filter(case_id=case.id, code__in=sorted(given), superseded=False).using_db(tx).update(
            superseded=True)
        for row in rows:
            await CaseMaterial.create(case_id=case.id, correction_round=case.correction_round, **row, using_db=tx)
        notice.answered_at = clock.now()
        await notice.save(using_db=tx, update_fields=["answered_at"])
        back = case.resume_status or CaseStatus.SUBMITTED
        await transition(case, back, actor=actor, using_db=tx, reason=payload.note, changes={"resume_status": None})
        if back == CaseStatus.SUBMITTED:
            await _pre_review(case, _checklist(version), tx)
    return await _full(case, keyring=keyring, secret=secret, base_url=base_url)


async def withdraw(*, resident_id: int, case_no: str, reason: str) -> Case:
    async with db.transaction() as tx:
        case = await owned_case(resident_id, case_no, tx)
        await transition(case, CaseStatus.WITHDRAWN, actor=Actor(RESIDENT, str(resident_id)), using_db=tx,
                         reason=reason)
    return case


# ---- the counter's side ---------------------------------------------------------------------


async def _staff_case(case_no: str, staff: StaffPrincipal, roles: tuple[StaffRole, ...],
                      using_db: BaseDBAsyncClient | None = None) -> Case:
    case = await Case.filter(case_no=case_no).using_db(using_db).first()
    if case is None:
        raise DomainError("case.not_found")
    staff.require(case.hall_id, *roles)  # type: ignore[attr-defined]
    return case


async def open_walk_in(*, payload: WalkInCaseIn, staff: StaffPrincipal, keyring: KeyRing, hash_key: str,
                       secret: str, base_url: str) -> dict[str, Any]:
    """A clerk applies for someone at the counter (现场代办). The ID number links the case to the person's
    mini-program account, now or whenever they bind it later."""
    staff.require(payload.hall_id, *CLERKS)
    applicant = walk_in_applicant(name=payload.applicant_name, id_number=payload.applicant_id_number,
                                  hash_key=hash_key)
    fields = payload.model_dump(exclude={"applicant_name", "applicant_id_number"})
    # A verified resident with this ID number owns the case from the start: it is in their mini program, they pay
    # it there and hear about it. Whoever binds this ID number later gets it then (`link_to_resident`).
    owner = await identity.resident_holding(id_hash=applicant.person_hash)
    case = await apply(payload=CaseIn.model_validate(fields), applicant=applicant, channel=CaseChannel.COUNTER,
                       actor=Actor(STAFF, str(staff.id)), keyring=keyring, owner_id=owner)
    return await _full(case, keyring=keyring, secret=secret, base_url=base_url, for_staff=True)


async def staff_view(*, case_no: str, staff: StaffPrincipal, keyring: KeyRing, secret: str, base_url: str
                     ) -> dict[str, Any]:
    """The whole case for a clerk of its hall, with the actions this clerk may take on it now."""
    case = await _staff_case(case_no, staff, READERS)
    full = await _full(case, keyring=keyring, secret=secret, base_url=base_url, for_staff=True)
    may_act = case.hall_id in staff.halls_with(*CLERKS)  # type: ignore[attr-defined]
    requests = await CorrectionRequest.filter(case_id=case.id).order_by("id")
    for r in requests:
        r.case = case
    further = case.status != CaseStatus.NEEDS_CORRECTION and await _answered_clerk_notice(case, None)
    return {**full, "actions": staff_actions(case) if may_act else [],
            # A notice now would be a repeat: the clerk asks a hall admin (POST .../notice-requests) instead.
            "further_notice_needs_approval": further, "notice_requests": await _described(list(requests))}


async def staff_material_content(*, case_no: str, material_id: int, staff: StaffPrincipal, store: FileStore
                                 ) -> tuple[bytes, str]:
    """The bytes of a material of a case in the clerk's own hall, to show it at the counter. Every view is audited.

    A case of another hall is "not found", never "forbidden": its number tells a stranger nothing.
    """
    case = await Case.filter(case_no=case_no).first()
    if case is None or case.hall_id not in staff.halls_with(*READERS):  # type: ignore[attr-defined]
        raise DomainError("case.not_found")
    material = await CaseMaterial.filter(id=material_id, case_id=case.id).prefetch_related("upload").first()
    if material is None or material.upload is None:
        raise DomainError("case.material_file_not_found")
    upload: Upload = material.upload
    data = await store.get(upload.sha256)
    async with db.transaction() as tx:
        await audit.record(using_db=tx, actor_kind="staff", actor_id=staff.id, action="case.material_viewed",
                           target_kind="case", target_id=case.case_no,
                           details={"material_id": material.id, "code": material.code})
    return data, upload.content_type


async def act(*, case_no: str, payload: TransitionIn, staff: StaffPrincipal, keyring: KeyRing, secret: str,
              base_url: str) -> dict[str, Any]:
    """One counter action on a case; the state machine decides whether it is allowed now."""
    actor = Actor(STAFF, str(staff.id))
    a = payload.action
    async with db.transaction() as tx:
        # Row lock on PostgreSQL so two clerks' actions on one case take turns.
        case = await Case.filter(case_no=case_no).using_db(tx).select_for_update().first()
        if case is None:
            raise DomainError("case.not_found")
        staff.require(case.hall_id, *CLERKS)  # type: ignore[attr-defined]
        if a == Action.ACCEPT:
            if payload.counter_id is not None:
                # Recorded for the ratings per counter: it must be a counter of the case's own hall.
                await catalog.hall_counter(counter_id=payload.counter_id, hall_id=case.hall_id)  # type: ignore[attr-defined]
            await transition(case, CaseStatus.ACCEPTED, actor=actor, using_db=tx, reason=payload.reason,
                             changes={"counter_id": payload.counter_id} if payload.counter_id else None)
        elif a == Action.REQUEST_CORRECTION:
            if case.status != CaseStatus.NEEDS_CORRECTION:
                _must_allow(case, CaseStatus.NEEDS_CORRECTION, actor)
                if await _answered_clerk_notice(case, tx):
                    # 一次性告知: what was missing was told once and answered. Another notice is a hall admin's call.
                    raise DomainError("case.notice_needs_approval", details={
                        "case_no": case.case_no, "pending_request": await _pending_request_id(case, tx)})
            await request_correction(case, payload.items, actor=actor, using_db=tx, note=payload.reason)
        elif a == Action.START_REVIEW:
            owes = case.has_fees and case.paid_at is None
            target = CaseStatus.AWAITING_PAYMENT if owes else CaseStatus.IN_REVIEW
            extra = {"amount_fen": case.fee_total_fen} if owes else None
            await transition(case, target, actor=actor, using_db=tx, reason=payload.reason, event_extra=extra)
        elif a == Action.APPROVE:
            await transition(case, CaseStatus.APPROVED, actor=actor, using_db=tx, reason=payload.reason)
            if case.certificate_type is not None:
                await issue_certificate(case, actor=actor, keyring=keyring, using_db=tx,
                                         valid_until=payload.valid_until)
        elif a == Action.REJECT:
            _must_allow(case, CaseStatus.REJECTED, actor)
            if not payload.reason:
                raise DomainError("case.reason_required")
            await transition(case, CaseStatus.REJECTED, actor=actor, using_db=tx, reason=payload.reason)
        elif a == Action.ISSUE_CERTIFICATE:
            await issue_certificate(case, actor=actor, keyring=keyring, using_db=tx,
                                     valid_until=payload.valid_until)
        elif a == Action.DELIVER:
            tracking = payload.tracking_no
            _must_allow(case, CaseStatus.DELIVERED, actor)
            if case.delivery_method == DeliveryMethod.POST and not tracking:
                raise DomainError("case.tracking_required")
            await transition(case, CaseStatus.DELIVERED, actor=actor, using_db=tx,
                             reason=payload.reason or ("已邮寄" if tracking else "申请人已领取"),
                             changes={"tracking_no": tracking} if tracking else None)
        elif a == Action.CLOSE:
            await transition(case, CaseStatus.CLOSED, actor=actor, using_db=tx, reason=payload.reason)
    return await _full(case, keyring=keyring, secret=secret, base_url=base_url, for_staff=True)


def _must_allow(case: Case, to: CaseStatus, actor: Actor) -> None:
    """Refuse an illegal move before checking the rest of the request, so the answer says what matters."""
    if allowed(case, to, actor) is None:
        raise DomainError("case.illegal_transition", details={"from": case.status.value, "to": to.value})


async def request_correction(case: Case, items: list[NoticeItemIn], *, actor: Actor,
                             using_db: BaseDBAsyncClient, note: str = "") -> None:
    """One-time notice (一次性告知) of what is missing, with the clerk's own note. Inside the caller's
    transaction, on a case row it holds locked; the counter and the main hall's callbacks both come here."""
    note = note.strip()
    if case.status != CaseStatus.NEEDS_CORRECTION:
        _must_allow(case, CaseStatus.NEEDS_CORRECTION, actor)
    listed = await _listed(case, items, actor=actor, using_db=using_db)
    if case.status == CaseStatus.NEEDS_CORRECTION:
        # Same round, still unanswered: the clerk completes the one notice instead of sending a second, and the
        # message that told the resident is brought up to date (`amends_event`) rather than joined by another.
        notice = await CorrectionNotice.filter(case_id=case.id, round=case.correction_round).using_db(using_db).get()
        known = {i["code"] for i in notice.items}
        added = [i for i in listed if i["code"] not in known]
        noted = bool(note) and note not in notice.note
        if not added and not noted:
            return  # nothing new to tell: no audit row, no message touched
        notice.items = [*notice.items, *added]
        if noted:
            notice.note = f"{notice.note}\n{note}" if notice.note else note
        notice.amended_at = clock.now()
        await notice.save(using_db=using_db, update_fields=["items", "note", "amended_at"])
        await audit.record(using_db=using_db, actor_kind=actor.kind, actor_id=actor.id, action="case.notice_amended",
                           target_kind="case", target_id=case.case_no,
                           details={"round": notice.round, "added": [i["code"] for i in added], "note": noted})
        payload: dict[str, Any] = {"case_id": case.id, "case_no": case.case_no, "round": notice.round,
                                   "codes": [i["code"] for i in notice.items], "amended": True}
        if notice.announced_event_id is not None:
            payload["amends_event"] = str(notice.announced_event_id)
        await outbox.emit(events.CASE_CORRECTION_NEEDED, payload, using_db=using_db,
                          ordering_key=events.ordering_key(case.case_no))
        return
    resume = case.status if case.status in (CaseStatus.ACCEPTED, CaseStatus.IN_REVIEW) else None
    await _open_notice(case, listed, actor=actor, using_db=using_db, resume=resume, note=note)


# ---- a further notice (再次告知): the clerk asks, a hall admin decides ----------------------------------


async def _pending_request_id(case: Case, using_db: BaseDBAsyncClient | None) -> int | None:
    row = await CorrectionRequest.filter(case_id=case.id, state=NoticeRequestState.PENDING).using_db(
        using_db).first()
    return row.id if row else None


def describe_request(r: CorrectionRequest, names: dict[int, str] | None = None) -> dict[str, Any]:
    names = names or {}
    return {
        "id": r.id, "case_no": r.case.case_no if isinstance(r.case, Case) else None,
        "hall_id": r.hall_id, "state": r.state.value, "items": r.items, "note": r.note, "reason": r.reason,
        "requested_by": {"id": r.requested_by, "name": names.get(r.requested_by)},
        "requested_at": r.requested_at.isoformat(),
        "decided_by": None if r.decided_by is None else {"id": r.decided_by, "name": names.get(r.decided_by)},
        "decided_at": r.decided_at.isoformat() if r.decided_at else None,
        "decision_reason": r.decision_reason or None,
    }


async def _described(rows: list[CorrectionRequest]) -> list[dict[str, Any]]:
    ids = {r.requested_by for r in rows} | {r.decided_by for r in rows if r.decided_by is not None}
    names = await identity.staff_names(staff_ids=ids) if ids else {}
    return [describe_request(r, names) for r in rows]


async def _internal_step(case: Case, step: str, *, actor: Actor, reason: str, using_db: BaseDBAsyncClient) -> None:
    """A step inside the hall that moves nothing: in the case's history for staff, never for the resident."""
    await CaseHistory.create(case_id=case.id, from_status=case.status, to_status=case.status, step=step,
                             actor_kind=actor.kind, actor_id=actor.id, reason=reason, internal=True,
                             created_at=clock.now(), using_db=using_db)


async def ask_further_notice(*, case_no: str, payload: NoticeRequestIn, staff: StaffPrincipal) -> dict[str, Any]:
    """A clerk asks the hall admins to approve a further correction notice on a case whose notice was answered,
    saying why. Nothing reaches the resident until a hall admin approves."""
    actor = Actor(STAFF, str(staff.id))
    async with db.transaction() as tx:
        case = await Case.filter(case_no=case_no).using_db(tx).select_for_update().first()
        if case is None:
            raise DomainError("case.not_found")
        staff.require(case.hall_id, *CLERKS)  # type: ignore[attr-defined]
        if case.status == CaseStatus.NEEDS_CORRECTION:
            raise DomainError("case.notice_approval_not_needed", details={"open_round": case.correction_round})
        _must_allow(case, CaseStatus.NEEDS_CORRECTION, actor)
        if not await _answered_clerk_notice(case, tx):
            raise DomainError("case.notice_approval_not_needed")
        pending = await _pending_request_id(case, tx)
        if pending is not None:
            raise DomainError("case.notice_request_pending", details={"request_id": pending})
        listed = await _listed(case, payload.items, actor=actor, using_db=tx)
        request = await CorrectionRequest.create(
            case_id=case.id, hall_id=case.hall_id, items=listed, note=payload.note.strip(),  # type: ignore[attr-defined]
            reason=payload.reason, requested_by=staff.id, requested_at=clock.now(), using_db=tx)
        names = "、".join(i["name"] for i in listed)
        await _internal_step(case, "申请再次补正告知（待大厅管理员审批）", actor=actor, using_db=tx,
                             reason=f"{payload.reason}（拟告知补正：{names}）")
        await audit.record(using_db=tx, actor_kind=actor.kind, actor_id=actor.id, action="case.notice_requested",
                           target_kind="case", target_id=case.case_no,
                           details={"request_id": request.id, "codes": [i["code"] for i in listed],
                                    "reason": payload.reason})
        await outbox.emit(events.CASE_NOTICE_APPROVAL_REQUESTED, {
            "request_id": request.id, "case_id": case.id, "case_no": case.case_no,
            "hall_id": case.hall_id,  # type: ignore[attr-defined]
        }, using_db=tx, ordering_key=events.ordering_key(case.case_no))
    request.case = case
    return (await _described([request]))[0]


async def decide_further_notice(*, request_id: int, payload: NoticeDecisionIn, staff: StaffPrincipal
                                ) -> dict[str, Any]:
    """A hall admin of the case's hall (not the clerk who asked) approves the further notice, which then goes to
    the resident as the next round, or refuses it; either way with a reason, in the history and the audit log."""
    actor = Actor(STAFF, str(staff.id))
    async with db.transaction() as tx:
        request = await CorrectionRequest.filter(id=request_id).using_db(tx).select_for_update().first()
        if request is None:
            raise DomainError("case.notice_request_not_found")
        staff.require(request.hall_id, StaffRole.HALL_ADMIN)
        if request.state != NoticeRequestState.PENDING:
            raise DomainError("case.notice_request_decided", details={"state": request.state.value})
        if request.requested_by == staff.id:
            raise DomainError("case.notice_own_request")
        case = await Case.filter(id=request.case_id).using_db(tx).select_for_update().get()  # type: ignore[attr-defined]
        now = clock.now()
        if payload.approve:
            # The case must still be where a notice can go (not decided or withdrawn meanwhile, no notice open).
            if case.status == CaseStatus.NEEDS_CORRECTION:
                raise DomainError("case.illegal_transition",
                                  details={"from": case.status.value, "to": CaseStatus.NEEDS_CORRECTION.value})
            _must_allow(case, CaseStatus.NEEDS_CORRECTION, actor)
        state = NoticeRequestState.APPROVED if payload.approve else NoticeRequestState.REFUSED
        moved = await CorrectionRequest.filter(id=request.id, state=NoticeRequestState.PENDING).using_db(tx).update(
            state=state, decided_by=staff.id, decided_at=now, decision_reason=payload.reason)
        if not moved:
            raise DomainError("case.notice_request_decided")
        request.state, request.decided_by, request.decided_at = state, staff.id, now
        request.decision_reason = payload.reason
        await _internal_step(case, "批准再次补正告知" if payload.approve else "不批准再次补正告知", actor=actor,
                             reason=payload.reason, using_db=tx)
        await audit.record(using_db=tx, actor_kind=actor.kind, actor_id=actor.id,
                           action="case.notice_approved" if payload.approve else "case.notice_refused",
                           target_kind="case", target_id=case.case_no,
                           details={"request_id": request.id, "requested_by": request.requested_by,
                                    "reason": payload.reason})
        if payload.approve:
            resume = case.status if case.status in (CaseStatus.ACCEPTED, CaseStatus.IN_REVIEW) else None
            await _open_notice(case, request.items, actor=actor, using_db=tx, resume=resume, note=request.note,
                               created_by=f"{STAFF}:{request.requested_by}", request=request)
    request.case = case
    return (await _described([request]))[0]


async def notice_requests(*, staff: StaffPrincipal, hall_id: int, state: NoticeRequestState | None
                          ) -> list[dict[str, Any]]:
    """A hall's requests for further notices, oldest pending first, for its hall admins (and clerks, auditors)."""
    staff.require(hall_id, *READERS)
    q = CorrectionRequest.filter(hall_id=hall_id)
    if state is not None:
        q = q.filter(state=state)
    rows = await q.order_by("requested_at", "id").prefetch_related("case")
    return await _described(list(rows))


async def _listed(case: Case, items: list[NoticeItemIn], *, actor: Actor, using_db: BaseDBAsyncClient
                  ) -> list[dict[str, Any]]:
    """The notice's entries from the case's pinned checklist, or a refusal naming codes it does not have."""
    if not items:
        raise DomainError("case.notice_items_required")
    version = await case.item_version.using_db(using_db)  # type: ignore[attr-defined]
    checklist = _checklist(version)
    unknown = sorted({i.code for i in items if i.code not in checklist})
    if unknown:
        raise DomainError("case.unknown_material", details={"codes": unknown})
    return [{"code": i.code, "name": checklist[i.code]["name"], "reason": i.reason or "需补正",
             "added_by": actor.label} for i in items]


async def issue_certificate(case: Case, *, actor: Actor, keyring: KeyRing, using_db: BaseDBAsyncClient,
                            valid_until: date | None) -> Certificate:
    """Sign and issue the case's e-certificate (inside the caller's transaction, case row locked)."""
    _must_allow(case, CaseStatus.CERTIFICATE_ISSUED, actor)
    version = await case.item_version.using_db(using_db)  # type: ignore[attr-defined]
    item = await case.item.using_db(using_db)  # type: ignore[attr-defined]
    hall = await catalog.get_hall(hall_id=case.hall_id)  # type: ignore[attr-defined]
    cert = await certificates.issue(case=case, item_code=item.code, department=version.department,
                                    region_code=hall.region_code, keyring=keyring, using_db=using_db,
                                    valid_until=valid_until)
    await transition(case, CaseStatus.CERTIFICATE_ISSUED, actor=actor, using_db=using_db,
                     reason=f"证照编号 {cert.cert_no}", event_extra={"certificate_id": cert.id})
    return cert


async def work_list(*, staff: StaffPrincipal, hall_id: int | None, status: CaseStatus | None,
                    item_code: str | None, warning: WarningLevel | None, limit: int, offset: int
                    ) -> dict[str, Any]:
    """The counter's work list, only ever within the halls this person works in."""
    if hall_id is not None:
        staff.require(hall_id, *READERS)
        halls = {hall_id}
    else:
        halls = staff.halls_with(*READERS)
    q = Case.filter(hall_id__in=sorted(halls))
    if status is not None:
        q = q.filter(status=status)
    if item_code:
        q = q.filter(item__code=item_code.strip().upper())
    if warning is not None:
        q = q.filter(warning_level=warning)
    total = await q.count()
    rows = await (q.order_by("promised_due", "id").offset(offset).limit(limit)
                  .prefetch_related("item", "item_version", "hall"))
    return {"total": total, "cases": [_summary(c) for c in rows]}


# ---- payment hand-off -----------------------------------------------------------------------


async def mark_paid(*, case_no: str, actor: str, using_db: BaseDBAsyncClient) -> None:
    """Called by payments once a case's fee is paid: review goes on and the clock resumes.

    Safe to call again for the same payment (notifications are retried): a case already paid is left alone.
    """
    case = await Case.filter(case_no=case_no).using_db(using_db).select_for_update().first()
    if case is None:
        raise DomainError("case.not_found")
    if case.paid_at is not None and case.status != CaseStatus.AWAITING_PAYMENT:
        return
    await transition(case, CaseStatus.IN_REVIEW, actor=Actor(PAYMENT, actor), using_db=using_db,
                     reason="费用已缴纳", changes={"paid_at": clock.now()})


# ---- progress -------------------------------------------------------------------------------


def progress_token(secret: str, case: Case) -> str:
    return qr.make_token(secret, "case", case.id)


async def _history(case: Case, *, for_staff: bool = False) -> list[CaseHistory]:
    """The case's steps; the hall's internal ones (a further notice asked for, approved, refused) for staff only."""
    q = CaseHistory.filter(case_id=case.id)
    if not for_staff:
        q = q.filter(internal=False)
    return await q.order_by("id")


async def public_progress(*, case_id: int, keyring: KeyRing) -> dict[str, Any]:
    """What a scanned case QR code shows anyone: no personal data, dates and steps only."""
    case = await Case.filter(id=case_id).prefetch_related("item", "item_version", "hall").first()
    if case is None:
        raise DomainError("qr.invalid")
    name = keyring.decrypt(case.applicant_name_enc, aad="case.applicant_name")
    tracking = case.tracking_no
    return {
        "kind": "case", "case_no": case.case_no, "item": {"name": case.item_version.name},
        "hall": {"name": case.hall.name}, "applicant": mask_name(name),
        "status": case.status.value, "status_label": STATUS_LABELS[case.status],
        "history": [{"at": h.created_at.astimezone(clock.SHANGHAI).isoformat(timespec="minutes"), "step": h.step,
                     "status": h.to_status.value} for h in await _history(case)],
        "deadline": deadlines.describe(case),
        "tracking_no": (tracking[:3] + "*" * (len(tracking) - 6) + tracking[-3:]) if tracking else None,
    }


def _summary(c: Case) -> dict[str, Any]:
    return {
        "case_no": c.case_no, "item": {"code": c.item.code, "name": c.item_version.name},
        "hall": {"id": c.hall.id, "name": c.hall.name}, "channel": c.channel.value,
        "status": c.status.value, "status_label": STATUS_LABELS[c.status],
        "submitted_at": c.submitted_at.isoformat() if c.submitted_at else None,
        "promised_due": c.promised_due.isoformat() if c.promised_due else None,
        "warning_level": c.warning_level.value,
    }


async def _full(case: Case, *, keyring: KeyRing, secret: str, base_url: str, for_staff: bool = False
                ) -> dict[str, Any]:
    """The whole case as its owner (or a clerk of its hall) sees it."""
    await case.fetch_related("item_version", "item", "hall")
    name = keyring.decrypt(case.applicant_name_enc, aad="case.applicant_name")
    id_number = keyring.decrypt(case.applicant_id_number_enc, aad="case.applicant_id_number")
    delivery: dict[str, Any] = {"method": case.delivery_method.value, "tracking_no": case.tracking_no}
    if case.delivery_address_enc:
        delivery.update(json.loads(keyring.decrypt(case.delivery_address_enc, aad="case.delivery_address")))
    materials = await CaseMaterial.filter(case_id=case.id).order_by("id").prefetch_related("upload", "certificate")
    notices = await CorrectionNotice.filter(case_id=case.id).order_by("round")
    certs = await Certificate.filter(case_id=case.id).order_by("id")
    token = progress_token(secret, case)
    from backend.cases import evaluation

    return {
        "case_no": case.case_no,
        "item": {"code": case.item.code, "name": case.item_version.name, "version": case.item_version.version,
                 "department": case.item_version.department},
        "hall": {"id": case.hall.id, "name": case.hall.name}, "channel": case.channel.value,
        "status": case.status.value, "status_label": STATUS_LABELS[case.status],
        "applicant": {"name": name, "id_number": mask_id_number(id_number) if for_staff else id_number},
        "form": json.loads(keyring.decrypt(case.form_enc, aad="case.form")),
        "delivery": delivery,
        "fees": {"total_fen": case.fee_total_fen, "paid": case.paid_at is not None},
        "materials": [{
            "id": m.id, "code": m.code, "name": m.name, "required": m.required, "source": m.source.value,
            "file": ({"upload_id": m.upload.id, "name": m.upload.display_name, "content_type": m.upload.content_type,
                      "size": m.upload.size} if m.upload else None),
            "certificate": m.certificate.cert_no if m.certificate else None,
            "round": m.correction_round, "superseded": m.superseded,
        } for m in materials],
        "corrections": [{"round": n.round, "items": n.items, "note": n.note, "created_at": n.created_at.isoformat(),
                         "amended_at": n.amended_at.isoformat() if n.amended_at else None,
                         "answered_at": n.answered_at.isoformat() if n.answered_at else None,
                         # 再次告知: sent after an answered notice, with a hall admin's approval.
                         "repeat": n.repeat} for n in notices],
        "history": [{"at": h.created_at.isoformat(), "step": h.step, "from": h.from_status.value if h.from_status
                     else None, "to": h.to_status.value, "actor": h.actor_kind, "reason": h.reason,
                     **({"internal": h.internal} if for_staff else {})}
                    for h in await _history(case, for_staff=for_staff)],
        "deadline": deadlines.describe(case),
        "certificates": [certificates.describe(c, keyring=keyring, secret=secret, base_url=base_url) for c in certs],
        "evaluation": await evaluation.for_case(case_id=case.id),
        "can_evaluate": case.status in COMPLETED,
        "progress_token": token, "progress_url": qr.url(base_url, token),
        "created_at": case.created_at.isoformat(),
    }


# ---- scanning at the counter ----------------------------------------------------------------


ACTIONS_FROM: dict[CaseStatus, list[str]] = {
    CaseStatus.SUBMITTED: ["accept", "request_correction", "reject"],
    CaseStatus.NEEDS_CORRECTION: ["request_correction", "reject"],
    CaseStatus.ACCEPTED: ["start_review", "request_correction"],
    CaseStatus.IN_REVIEW: ["approve", "reject", "request_correction"],
    CaseStatus.APPROVED: ["issue_certificate", "deliver"],
    CaseStatus.CERTIFICATE_ISSUED: ["deliver", "close"],
    CaseStatus.DELIVERED: ["close"],
    CaseStatus.REJECTED: ["close"],
}


# What each counter action moves a case to: an action is offered only when the state machine allows one now.
ACTION_TARGETS: dict[str, tuple[CaseStatus, ...]] = {
    Action.ACCEPT: (CaseStatus.ACCEPTED,),
    Action.REQUEST_CORRECTION: (CaseStatus.NEEDS_CORRECTION,),
    Action.START_REVIEW: (CaseStatus.IN_REVIEW, CaseStatus.AWAITING_PAYMENT),
    Action.APPROVE: (CaseStatus.APPROVED,),
    Action.REJECT: (CaseStatus.REJECTED,),
    Action.ISSUE_CERTIFICATE: (CaseStatus.CERTIFICATE_ISSUED,),
    Action.DELIVER: (CaseStatus.DELIVERED,),
    Action.CLOSE: (CaseStatus.CLOSED,),
}


def staff_actions(case: Case) -> list[str]:
    """The counter actions the state machine (guards included) allows on this case now."""
    actor = Actor(STAFF)
    out = []
    for action in ACTIONS_FROM.get(case.status, []):
        amending = action == Action.REQUEST_CORRECTION and case.status == CaseStatus.NEEDS_CORRECTION
        if amending or any(allowed(case, to, actor) for to in ACTION_TARGETS[action]):
            out.append(action)
    return out


async def scan_card(*, case_id: int, staff: StaffPrincipal) -> dict[str, Any]:
    case = await Case.filter(id=case_id).prefetch_related("item", "item_version", "hall").first()
    if case is None:
        raise DomainError("qr.invalid")
    staff.require(case.hall_id, *READERS)  # type: ignore[attr-defined]
    return {**_summary(case), "deadline": deadlines.describe(case), "actions": ACTIONS_FROM.get(case.status, [])}


# ---- statistics -----------------------------------------------------------------------------


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start, end] as Asia/Shanghai days, in UTC instants."""
    lo = datetime.combine(start, time.min, tzinfo=clock.SHANGHAI)
    hi = datetime.combine(end + timedelta(days=1), time.min, tzinfo=clock.SHANGHAI)
    # In UTC, like the stored instants: SQLite compares them as text, so 00:00+08:00 of a day must be written as
    # 16:00+00:00 of the day before, or the first eight hours of every Shanghai day fall outside it.
    return lo.astimezone(UTC), hi.astimezone(UTC)


async def material_stats(*, staff: StaffPrincipal, hall_id: int, start: date, end: date) -> dict[str, Any]:
    """Per item: required materials satisfied by reuse, by an e-certificate, or handed in fresh."""
    staff.require(hall_id, StaffRole.HALL_ADMIN, StaffRole.AUDITOR)
    lo, hi = period_bounds(start, end)
    rows = await (CaseMaterial.filter(case__hall_id=hall_id, case__submitted_at__gte=lo, case__submitted_at__lt=hi,
                                      required=True, superseded=False)
                  .values("case__item__code", "case__item__name", "source"))
    per: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = per.setdefault(r["case__item__code"], {"item_code": r["case__item__code"],
                                                       "item_name": r["case__item__name"], "reused": 0,
                                                       "certificate": 0, "fresh": 0})
        source = MaterialSource(r["source"])
        key = {MaterialSource.REUSE: "reused", MaterialSource.CERTIFICATE: "certificate"}.get(source, "fresh")
        entry[key] += 1
    items = []
    for entry in sorted(per.values(), key=lambda e: e["item_code"]):
        total = entry["reused"] + entry["certificate"] + entry["fresh"]
        saved = entry["reused"] + entry["certificate"]
        items.append({**entry, "total": total, "not_asked_again_rate": round(saved / total, 4) if total else 0.0})
    return {"hall_id": hall_id, "from": start.isoformat(), "to": end.isoformat(), "items": items}


# ---- deadline warnings (the periodic task) --------------------------------------------------


async def warn_deadlines(*, on: date | None = None) -> list[tuple[str, str]]:
    """Warn once at 80% of the promised limit (yellow) and once on passing it (red); returns what was sent."""
    on = on or deadlines.today()
    sent: list[tuple[str, str]] = []
    due = await Case.filter(
        Q(yellow_warned_at__isnull=True, yellow_on__lte=on) | Q(red_warned_at__isnull=True, promised_due__lt=on),
        status__in=list(deadlines.RUNNING),
    ).values_list("id", flat=True)
    for case_id in due:
        async with db.transaction() as tx:
            case = await Case.filter(id=case_id, status__in=list(deadlines.RUNNING)).using_db(tx) \
                .select_for_update().first()
            if case is None:
                continue
            level = deadlines.level_on(case, on)
            now = clock.now()
            changes: dict[str, Any] = {"warning_level": level}
            to_send = []
            if level in (WarningLevel.YELLOW, WarningLevel.RED) and case.yellow_warned_at is None \
                    and case.yellow_on is not None and case.yellow_on <= on:
                changes["yellow_warned_at"] = now
                to_send.append(WarningLevel.YELLOW)
            if level == WarningLevel.RED and case.red_warned_at is None:
                changes["red_warned_at"] = now
                to_send.append(WarningLevel.RED)
            # Guarded by the flags read above, so two workers never warn twice.
            moved = await Case.filter(id=case.id, yellow_warned_at=case.yellow_warned_at,
                                      red_warned_at=case.red_warned_at).using_db(tx).update(**changes)
            if not moved:
                continue
            for lvl in to_send:
                await outbox.emit(events.CASE_DEADLINE_WARNING, {
                    "case_id": case.id, "case_no": case.case_no, "hall_id": case.hall_id,  # type: ignore[attr-defined]
                    "level": lvl.value, "promised_due": case.promised_due.isoformat() if case.promised_due else None,
                }, using_db=tx, ordering_key=events.ordering_key(case.case_no))
                await audit.record(using_db=tx, actor_kind="system", actor_id="deadlines",
                                   action="case.deadline_warning", target_kind="case", target_id=case.case_no,
                                   details={"level": lvl.value})
                sent.append((case.case_no, lvl.value))
    return sent


async def recompute_provisional() -> int:
    """Once a year's calendar is official, every provisional due date is worked out again."""
    ids = await Case.filter(due_provisional=True).values_list("id", flat=True)
    for case_id in ids:
        async with db.transaction() as tx:
            case = await Case.filter(id=case_id).using_db(tx).select_for_update().first()
            if case is None:
                continue
            await deadlines.recompute(case)
            await Case.filter(id=case.id).using_db(tx).update(
                promised_due=case.promised_due, statutory_due=case.statutory_due, yellow_on=case.yellow_on,
                due_provisional=case.due_provisional)
    return len(ids)


async def case_parties(*, case_id: int) -> dict[str, int | None] | None:
    """Ids and the fee only, for other packages: whose case it is (None for a walk-in applicant who has no verified
    account), item, hall, fee in fen."""
    row = await Case.filter(id=case_id).first().values("resident_id", "applicant_hash", "item_id", "hall_id",
                                                         "fee_total_fen")
    if not row:
        return None
    owner = row["resident_id"]
    if owner is None:
        # Bound a moment ago and not linked yet (the link follows the binding through the outbox): theirs already.
        owner = await identity.resident_holding(id_hash=str(row["applicant_hash"]))
    return {"resident_id": None if owner is None else int(owner),
            "item_id": int(row["item_id"]), "hall_id": int(row["hall_id"]),
            "fee_total_fen": int(row["fee_total_fen"] or 0)}


async def case_id_of(*, case_no: str) -> int | None:
    """The id of the case with this number, for packages that know cases by number (payments)."""
    return await Case.filter(case_no=case_no).first().values_list("id", flat=True)  # type: ignore[return-value]


async def delivery_of(*, case_id: int) -> dict[str, str | None] | None:
    """How the result goes to the applicant and, when posted, the tracking number (for the resident's notice)."""
    row = await Case.filter(id=case_id).first().values("delivery_method", "tracking_no")
    if not row:
        return None
    return {"method": str(row["delivery_method"]), "tracking_no": row["tracking_no"]}


async def link_to_resident(*, resident_id: int) -> list[str]:
    """Walk-in cases opened at a counter with the ID number this resident has just bound become theirs, and so do
    the e-certificates issued on them. One transaction; each case is linked once (a case already owned is left
    alone, so running this again changes nothing), with an audit row and a history row for the hall's staff."""
    resident = await identity.get_resident(resident_id=await identity.reached_as(resident_id=resident_id))
    person_hash = resident.id_number_hash
    if resident.verified_at is None or person_hash is None:
        return []
    linked: list[str] = []
    async with db.transaction() as tx:
        waiting = await (Case.filter(applicant_hash=person_hash, resident_id=None).using_db(tx)
                         .select_for_update().order_by("id"))
        now = clock.now()
        for case in waiting:
            if not await Case.filter(id=case.id, resident_id=None).using_db(tx).update(resident_id=resident.id):
                continue
            await CaseHistory.create(case_id=case.id, from_status=case.status, to_status=case.status,
                                     step="办件已关联到申请人账号", actor_kind="system", actor_id="real_name",
                                     reason="申请人完成实名认证，窗口办理的办件归入其账号", internal=True,
                                     created_at=now, using_db=tx)
            await audit.record(using_db=tx, actor_kind="system", actor_id="real_name", action="case.owner_linked",
                               target_kind="case", target_id=case.case_no,
                               details={"resident_id": resident.id, "how": "real_name_bound"})
            linked.append(case.case_no)
        certs = await certificates.link_holder(person_hash=person_hash, resident_id=resident.id, using_db=tx)
        if linked or certs:
            await audit.record(using_db=tx, actor_kind="system", actor_id="real_name", action="resident.cases_linked",
                               target_kind="resident", target_id=resident.id,
                               details={"cases": linked, "certificates": certs})
    return linked


async def stored_identifiers(*, keyring: KeyRing, batch: int = 1000) -> AsyncIterator[StoredIdentifier]:
    """Every case's applicant ID number (with its keyed hash) and postal phone, and every certificate holder's
    ID number, as stored (for `identity check-ids`)."""
    last = 0
    while True:
        rows = await (Case.filter(id__gt=last).order_by("id").limit(batch)
                      .values_list("id", "applicant_id_number_enc", "applicant_hash", "delivery_address_enc"))
        if not rows:
            break
        for case_id, id_enc, person_hash, address_enc in rows:
            last = case_id
            yield read_stored(keyring, id_enc, aad="case.applicant_id_number", table="cases", row_id=case_id,
                              field="applicant_id_number", kind="id_number", hash=person_hash)
            if address_enc:
                address = read_stored(keyring, address_enc, aad="case.delivery_address", table="cases",
                                      row_id=case_id, field="delivery_phone", kind="phone", hash=None)
                phone = json.loads(address.value).get("phone") if address.value is not None else None
                if address.value is None or phone:
                    yield StoredIdentifier(table="cases", row_id=case_id, field="delivery_phone", kind="phone",
                                           value=phone, hash=None, unreadable=address.unreadable)
    last = 0
    while True:
        certs = await (Certificate.filter(id__gt=last).order_by("id").limit(batch)
                       .values_list("id", "holder_id_number_enc", "holder_hash"))
        if not certs:
            break
        for cert_id, id_enc, holder_hash in certs:
            last = cert_id
            yield read_stored(keyring, id_enc, aad="certificate.holder_id_number", table="certificate",
                              row_id=cert_id, field="holder_id_number", kind="id_number", hash=holder_hash)
