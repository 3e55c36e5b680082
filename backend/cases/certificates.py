"""E-certificates (电子证照): issued on approval, signed by the hall's key, verified from their QR code."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import date
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q

from backend import db, qr
from backend.audit import service as audit
from backend.cases import deadlines
from backend.cases.models import Case, Certificate, CertificateStatus, HallSigningKey
from backend.crypto import KeyError_, KeyRing
from backend.errors import DomainError, register_codes
from backend.identity.personal import mask_id_number, mask_name
from backend.identity.service import StaffPrincipal

register_codes({
    "certificate.not_found": (404, "未找到该电子证照"),
    "certificate.already_revoked": (409, "该电子证照已注销"),
})

ED25519 = "Ed25519"
# Algorithms a certificate may record. SM2 (GB/T 32918) joins here when a signer for it is added.
ALGORITHMS = (ED25519,)

# GB/T 36903 电子证照元数据 names for the fields we keep.
META_NAMES = {
    "cert_type": "证照类型名称", "cert_no": "证照编号", "issuing_department": "证照颁发机构",
    "issuing_department_code": "证照颁发机构代码", "issued_on": "证照颁发日期",
    "valid_from": "证照有效期起始日期", "valid_until": "证照有效期截止日期", "holder": "持证主体",
    "holder_code": "持证主体代码", "holder_code_type": "持证主体代码类型", "surface": "证照照面信息",
}


def _aad_private(key_id: str) -> str:
    return f"hall_signing_key.private:{key_id}"


async def _signing_key(hall_id: int, keyring: KeyRing, using_db: BaseDBAsyncClient) -> HallSigningKey:
    """The hall's active key, made on first use."""
    key = await HallSigningKey.filter(hall_id=hall_id, active=True).using_db(using_db).order_by("-id").first()
    if key is not None:
        return key
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = f"hall{hall_id}-{secrets.token_hex(6)}"
    made = await HallSigningKey.create(
        hall_id=hall_id, key_id=key_id, algorithm=ED25519, public_key=base64.b64encode(public).decode(),
        private_key_enc=keyring.encrypt(base64.b64encode(raw).decode(), aad=_aad_private(key_id)),
        using_db=using_db,
    )
    await audit.record(using_db=using_db, actor_kind="system", actor_id=None, action="certificate.key_created",
                       target_kind="hall", target_id=hall_id, details={"key_id": key_id, "algorithm": ED25519})
    return made


def _private(key: HallSigningKey, keyring: KeyRing) -> Ed25519PrivateKey:
    raw = base64.b64decode(keyring.decrypt(key.private_key_enc, aad=_aad_private(key.key_id)))
    return Ed25519PrivateKey.from_private_bytes(raw)


def _public(key: HallSigningKey, keyring: KeyRing) -> Ed25519PublicKey:
    # Derived from the encrypted private key, not read from the stored public key: whoever can
    # rewrite rows but lacks the data key cannot swap in a key of their own and re-sign.
    return _private(key, keyring).public_key()


def signed_content(*, cert: Certificate, holder_name: str, holder_id_number: str, key_id: str) -> bytes:
    """Every stored field a certificate's signature covers (the status and revocation are not: they change)."""
    content = {
        "cert_no": cert.cert_no, "cert_type": cert.cert_type, "case_id": cert.case_id,  # type: ignore[attr-defined]
        "holder_hash": cert.holder_hash, "holder_name": holder_name, "holder_id_number": holder_id_number,
        "item_code": cert.item_code, "issuing_department": cert.issuing_department,
        "hall_id": cert.hall_id,  # type: ignore[attr-defined]
        "issued_on": cert.issued_on.isoformat(), "valid_from": cert.valid_from.isoformat(),
        "valid_until": cert.valid_until.isoformat() if cert.valid_until else None, "extra": cert.extra,
        "algorithm": cert.algorithm, "key_id": key_id,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def issue(*, case: Case, item_code: str, department: str, region_code: str, keyring: KeyRing,
                using_db: BaseDBAsyncClient, valid_until: date | None = None,
                extra: dict[str, Any] | None = None) -> Certificate:
    """Issue the case's certificate in the caller's transaction (the state machine records the step)."""
    if case.certificate_type is None:
        raise ValueError("this case's item issues no certificate")
    key = await _signing_key(case.hall_id, keyring, using_db)  # type: ignore[attr-defined]
    holder_name = keyring.decrypt(case.applicant_name_enc, aad="case.applicant_name")
    holder_id = keyring.decrypt(case.applicant_id_number_enc, aad="case.applicant_id_number")
    today = deadlines.today()
    count = await Certificate.filter(case_id=case.id).using_db(using_db).count()
    cert = Certificate(
        cert_no=f"DZ{case.case_no}{count + 1:02d}", cert_type=case.certificate_type, case_id=case.id,
        holder_resident_id=case.resident_id, holder_hash=case.applicant_hash,
        holder_name_enc=keyring.encrypt(holder_name, aad="certificate.holder_name"),
        holder_id_number_enc=keyring.encrypt(holder_id, aad="certificate.holder_id_number"),
        item_code=item_code, issuing_department=department,
        hall_id=case.hall_id,  # type: ignore[attr-defined]
        issued_on=today, valid_from=today, valid_until=valid_until,
        extra={"issuing_department_code": region_code, **(extra or {})}, algorithm=key.algorithm,
        signing_key_id=key.id,
    )
    content = signed_content(cert=cert, holder_name=holder_name, holder_id_number=holder_id, key_id=key.key_id)
    cert.signature = base64.b64encode(_private(key, keyring).sign(content)).decode()
    await cert.save(using_db=using_db)
    await audit.record(using_db=using_db, actor_kind="system", actor_id=None, action="certificate.issued",
                       target_kind="certificate", target_id=cert.cert_no,
                       details={"case_no": case.case_no, "type": cert.cert_type, "key_id": key.key_id})
    return cert


def _holder(cert: Certificate, keyring: KeyRing) -> tuple[str, str]:
    return (keyring.decrypt(cert.holder_name_enc, aad="certificate.holder_name"),
            keyring.decrypt(cert.holder_id_number_enc, aad="certificate.holder_id_number"))


def genuine(cert: Certificate, key: HallSigningKey, keyring: KeyRing) -> bool:
    """Does the signature still cover what is stored? Any altered field, or ciphertext, fails."""
    if cert.algorithm not in ALGORITHMS or cert.algorithm != key.algorithm:
        return False
    try:
        name, id_number = _holder(cert, keyring)
        content = signed_content(cert=cert, holder_name=name, holder_id_number=id_number, key_id=key.key_id)
        _public(key, keyring).verify(base64.b64decode(cert.signature), content)
    except (InvalidSignature, KeyError_, ValueError, TypeError):
        return False
    except Exception:  # AES-GCM refusing altered ciphertext (InvalidTag) and the like
        return False
    return True


def _status(cert: Certificate, ok: bool, on: date) -> str:
    if not ok:
        return "not_genuine"
    if cert.status == CertificateStatus.REVOKED:
        return "revoked"
    if cert.valid_until is not None and on > cert.valid_until:
        return "expired"
    return "genuine"


RESULT_LABELS = {"genuine": "真实有效", "expired": "已过有效期", "revoked": "已注销",
                 "not_genuine": "验证未通过，证照信息可能被篡改"}


def metadata(cert: Certificate, *, holder_name: str, holder_id_number: str) -> dict[str, Any]:
    """The GB/T 36903 metadata block, with the holder as given (callers mask for the public)."""
    values = {
        "cert_type": cert.cert_type, "cert_no": cert.cert_no, "issuing_department": cert.issuing_department,
        "issuing_department_code": cert.extra.get("issuing_department_code", ""),
        "issued_on": cert.issued_on.isoformat(), "valid_from": cert.valid_from.isoformat(),
        "valid_until": cert.valid_until.isoformat() if cert.valid_until else "长期",
        "holder": holder_name, "holder_code": holder_id_number, "holder_code_type": "公民身份号码",
        "surface": {k: v for k, v in cert.extra.items() if k != "issuing_department_code"},
    }
    return {META_NAMES[k]: v for k, v in values.items()}


async def verify(*, certificate_id: int, keyring: KeyRing) -> dict[str, Any]:
    """What anyone scanning the certificate's QR code learns: genuine, expired, revoked or not genuine."""
    cert = await Certificate.get_or_none(id=certificate_id)
    if cert is None:
        raise DomainError("qr.invalid")
    key = await HallSigningKey.get(id=cert.signing_key_id)  # type: ignore[attr-defined]
    ok = genuine(cert, key, keyring)
    result = _status(cert, ok, deadlines.today())
    answer: dict[str, Any] = {"result": result, "result_label": RESULT_LABELS[result], "algorithm": cert.algorithm,
                              "key_id": key.key_id}
    if ok:
        # Only what the signature vouches for is shown, and the holder masked.
        name, id_number = _holder(cert, keyring)
        answer["certificate"] = {
            "cert_no": cert.cert_no, "cert_type": cert.cert_type, "issuing_department": cert.issuing_department,
            "issued_on": cert.issued_on.isoformat(),
            "valid_until": cert.valid_until.isoformat() if cert.valid_until else None,
            "holder": mask_name(name), "holder_id_number": mask_id_number(id_number),
            "revoked_at": cert.revoked_at.isoformat() if cert.revoked_at else None,
            "metadata": metadata(cert, holder_name=mask_name(name), holder_id_number=mask_id_number(id_number)),
        }
    return answer


def describe(cert: Certificate, *, keyring: KeyRing, secret: str, base_url: str) -> dict[str, Any]:
    """The holder's own view of a certificate, with its verification QR link."""
    name, id_number = _holder(cert, keyring)
    token = qr.make_token(secret, "certificate", cert.id)
    on = deadlines.today()
    state = _status(cert, True, on)
    return {
        "id": cert.id, "cert_no": cert.cert_no, "cert_type": cert.cert_type, "item_code": cert.item_code,
        "issuing_department": cert.issuing_department, "issued_on": cert.issued_on.isoformat(),
        "valid_from": cert.valid_from.isoformat(),
        "valid_until": cert.valid_until.isoformat() if cert.valid_until else None,
        "status": state, "algorithm": cert.algorithm,
        "metadata": metadata(cert, holder_name=name, holder_id_number=mask_id_number(id_number)),
        "verify_token": token, "verify_url": qr.url(base_url, token),
    }


def _holder_filter(resident_id: int, person_hash: str | None) -> Q:
    q = Q(holder_resident_id=resident_id)
    return q | Q(holder_hash=person_hash) if person_hash else q


async def list_for_holder(*, resident_id: int, person_hash: str | None, keyring: KeyRing, secret: str,
                          base_url: str, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """The holder's certificates, newest first (one page of them with `limit`)."""
    query = Certificate.filter(_holder_filter(resident_id, person_hash)).order_by("-id").offset(offset)
    rows = await (query.limit(limit) if limit is not None else query)
    return [describe(c, keyring=keyring, secret=secret, base_url=base_url) for c in rows]


async def count_for_holder(*, resident_id: int, person_hash: str | None) -> int:
    return await Certificate.filter(_holder_filter(resident_id, person_hash)).count()


async def link_holder(*, person_hash: str, resident_id: int, using_db: BaseDBAsyncClient) -> list[str]:
    """Certificates issued to this person before they had a verified account become their account's (the holder's
    account id is not part of what the signature covers). Returns the certificate numbers linked."""
    numbers = await Certificate.filter(holder_hash=person_hash, holder_resident_id=None).using_db(
        using_db).values_list("cert_no", flat=True)
    if numbers:
        await Certificate.filter(holder_hash=person_hash, holder_resident_id=None).using_db(using_db).update(
            holder_resident_id=resident_id)
    return [str(n) for n in numbers]


async def held(*, certificate_id: int, person_hash: str, using_db: BaseDBAsyncClient | None = None
               ) -> Certificate | None:
    """The applicant's own certificate, or None: another person's is as unknown as one that does not exist."""
    return await Certificate.filter(id=certificate_id, holder_hash=person_hash).using_db(using_db).first()


def usable(cert: Certificate, *, cert_type: str | None) -> bool:
    """Of the type a checklist entry names, and current (neither expired nor revoked)."""
    return cert_type is not None and cert.cert_type == cert_type and _status(cert, True, deadlines.today()) == "genuine"


async def revoke(*, cert_no: str, staff: StaffPrincipal, reason: str, roles: tuple[Any, ...]) -> dict[str, Any]:
    from backend import clock

    cert = await Certificate.get_or_none(cert_no=cert_no)
    if cert is None:
        raise DomainError("certificate.not_found")
    staff.require(cert.hall_id, *roles)  # type: ignore[attr-defined]
    if cert.status == CertificateStatus.REVOKED:
        raise DomainError("certificate.already_revoked")
    async with db.transaction() as tx:
        await Certificate.filter(id=cert.id).using_db(tx).update(
            status=CertificateStatus.REVOKED, revoked_at=clock.now(), revoke_reason=reason)
        await audit.record(using_db=tx, actor_kind="staff", actor_id=staff.id, action="certificate.revoked",
                           target_kind="certificate", target_id=cert.cert_no, details={"reason": reason})
    return {"cert_no": cert.cert_no, "status": CertificateStatus.REVOKED.value}
