"""Applications (办件), their history, uploads and materials, correction notices, e-certificates, evaluations."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from backend.catalog.models import Hall, ServiceItem, ServiceItemVersion


class CaseStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    NEEDS_CORRECTION = "needs_correction"
    ACCEPTED = "accepted"
    IN_REVIEW = "in_review"
    AWAITING_PAYMENT = "awaiting_payment"
    APPROVED = "approved"
    REJECTED = "rejected"
    CERTIFICATE_ISSUED = "certificate_issued"
    DELIVERED = "delivered"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class CaseChannel(StrEnum):
    MINI_PROGRAM = "mini_program"
    KIOSK = "kiosk"
    COUNTER = "counter"


class DeliveryMethod(StrEnum):
    PICKUP = "pickup"  # 窗口领取
    POST = "post"  # 邮寄送达


class WarningLevel(StrEnum):
    NONE = "none"
    YELLOW = "yellow"  # 80% of the promised limit used
    RED = "red"  # the promised limit passed


class MaterialSource(StrEnum):
    UPLOAD = "upload"  # handed in fresh for this case, as a file
    PAPER = "paper"  # handed in fresh for this case, on paper at the counter
    REUSE = "reuse"  # accepted in an earlier case, attached again
    CERTIFICATE = "certificate"  # an e-certificate the applicant holds stands for it


class CertificateStatus(StrEnum):
    VALID = "valid"
    REVOKED = "revoked"


class TicketState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class NoticeRequestState(StrEnum):
    PENDING = "pending"  # the clerk asked; a hall admin has not decided
    APPROVED = "approved"  # the further notice went out
    REFUSED = "refused"  # no further notice: the hall admin said why


class ComplaintKind(StrEnum):
    COMPLAINT = "complaint"  # 投诉
    QUESTION = "question"  # 咨询


class Case(Model):
    """One application for one service item in one hall, pinned to the guide version it started with."""

    id = fields.BigIntField(primary_key=True)
    # 办件编号: hall region code + Shanghai date + serial. Never a lookup key from outside (QR tokens are).
    case_no = fields.CharField(max_length=32, unique=True)
    # The resident who applied or, for a walk-in, whose verified ID number matches at creation.
    resident_id = fields.BigIntField(null=True, db_index=True)
    # Keyed hash of the applicant's ID number: a walk-in case reaches the resident's account through it.
    applicant_hash = fields.CharField(max_length=64, db_index=True)
    applicant_name_enc = fields.TextField()
    applicant_id_number_enc = fields.TextField()
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="cases", on_delete=fields.RESTRICT
    )
    item: fields.ForeignKeyRelation[ServiceItem] = fields.ForeignKeyField(
        "palmhall.ServiceItem", related_name="cases", on_delete=fields.RESTRICT
    )
    item_version: fields.ForeignKeyRelation[ServiceItemVersion] = fields.ForeignKeyField(
        "palmhall.ServiceItemVersion", related_name="cases", on_delete=fields.RESTRICT
    )
    channel = fields.CharEnumField(CaseChannel, max_length=16)
    status = fields.CharEnumField(CaseStatus, max_length=20, default=CaseStatus.DRAFT, db_index=True)
    # Form fields may name people and places: the whole form is encrypted JSON.
    form_enc = fields.TextField()
    delivery_method = fields.CharEnumField(DeliveryMethod, max_length=8, default=DeliveryMethod.PICKUP)
    delivery_address_enc = fields.TextField(null=True)
    tracking_no = fields.CharField(max_length=40, null=True)
    # The counter that accepted the case (for evaluation statistics per counter).
    counter_id = fields.IntField(null=True)
    created_by = fields.CharField(max_length=40)  # resident:<id>, staff:<id>, kiosk:<device>
    submitted_at = fields.DatetimeField(null=True)
    accepted_at = fields.DatetimeField(null=True)
    decided_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    has_fees = fields.BooleanField(default=False)
    fee_total_fen = fields.IntField(default=0)
    # The e-certificate type the pinned item version issues on approval, if any.
    certificate_type = fields.CharField(max_length=64, null=True)
    paid_at = fields.DatetimeField(null=True)
    # Time limits, in working days of the catalog calendar, counted from the day after acceptance.
    statutory_days = fields.IntField()
    promised_days = fields.IntField()
    accepted_on = fields.DateField(null=True)
    paused_since = fields.DateField(null=True)  # set while waiting for a correction or a payment
    # Ended pauses as [[from, to], ...] ISO dates: the working days in (from, to] do not count.
    pauses: fields.Field = fields.JSONField(default=list)
    yellow_on = fields.DateField(null=True)  # the day 80% of the promised limit is used
    promised_due = fields.DateField(null=True)
    statutory_due = fields.DateField(null=True)
    # A due date that reaches into a year the calendar does not know yet (recomputed when it is loaded).
    due_provisional = fields.BooleanField(default=False)
    warning_level = fields.CharEnumField(WarningLevel, max_length=8, default=WarningLevel.NONE, db_index=True)
    yellow_warned_at = fields.DatetimeField(null=True)
    red_warned_at = fields.DatetimeField(null=True)
    # The state a correction interrupted, so answering it resumes where the case was.
    resume_status = fields.CharEnumField(CaseStatus, max_length=20, null=True)
    correction_round = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "cases"


class CaseHistory(Model):
    """One transition of a case: who, when, from which state to which, and why."""

    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "palmhall.Case", related_name="history", on_delete=fields.CASCADE
    )
    from_status = fields.CharEnumField(CaseStatus, max_length=20, null=True)
    to_status = fields.CharEnumField(CaseStatus, max_length=20)
    step = fields.CharField(max_length=40)  # the step's name in Chinese, shown to the resident
    actor_kind = fields.CharField(max_length=16)  # resident, staff, kiosk, system, payment
    actor_id = fields.CharField(max_length=64, null=True)
    reason = fields.TextField(default="")
    # A step inside the hall (a clerk asking for a further notice, a hall admin's answer): shown to staff only,
    # never in the resident's or the public progress.
    internal = fields.BooleanField(default=False)
    created_at = fields.DatetimeField()

    class Meta:
        table = "case_history"


class CaseSerial(Model):
    """The last serial handed out per hall per Shanghai day, for case numbers."""

    id = fields.IntField(primary_key=True)
    hall_id = fields.IntField()
    day = fields.DateField()
    last_serial = fields.IntField(default=0)

    class Meta:
        table = "case_serial"
        unique_together = (("hall_id", "day"),)


class Upload(Model):
    """A file a resident uploaded. The bytes live in the file store under their SHA-256, never their name."""

    id = fields.BigIntField(primary_key=True)
    resident_id = fields.BigIntField(db_index=True)
    sha256 = fields.CharField(max_length=64, db_index=True)
    size = fields.IntField()
    content_type = fields.CharField(max_length=32)  # decided from the bytes
    # The name as the phone showed it, checked and kept for display only.
    display_name = fields.CharField(max_length=200)
    day = fields.DateField()  # Shanghai day, for the daily limit
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "upload"


class CaseMaterial(Model):
    """A material of a case against one checklist entry of its item version."""

    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "palmhall.Case", related_name="materials", on_delete=fields.CASCADE
    )
    code = fields.CharField(max_length=32)  # checklist code of the item version
    name = fields.CharField(max_length=200)
    required = fields.BooleanField(default=True)
    source = fields.CharEnumField(MaterialSource, max_length=12)
    upload: fields.ForeignKeyNullableRelation[Upload] = fields.ForeignKeyField(
        "palmhall.Upload", related_name="uses", null=True, on_delete=fields.RESTRICT
    )
    certificate: fields.ForeignKeyNullableRelation[Certificate] = fields.ForeignKeyField(
        "palmhall.Certificate", related_name="uses", null=True, on_delete=fields.RESTRICT
    )
    # For reuse: the earlier accepted material this one repeats.
    reused_from_id = fields.BigIntField(null=True)
    correction_round = fields.IntField(default=0)  # 0 at application, N when answering round N
    # A later material for the same code (a correction) supersedes this one.
    superseded = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "case_material"


class CorrectionNotice(Model):
    """One round of 一次性告知: everything missing or wrong, told at once."""

    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "palmhall.Case", related_name="notices", on_delete=fields.CASCADE
    )
    round = fields.IntField()
    # [{code, name, reason, added_by}]
    items: fields.Field = fields.JSONField(default=list)
    # What the clerk adds in their own words, beside the listed materials (shown to the resident as is).
    note = fields.TextField(default="")
    created_by = fields.CharField(max_length=40)
    created_at = fields.DatetimeField()
    answered_at = fields.DatetimeField(null=True)
    # 再次告知: issued after an earlier notice a clerk had a hand in was answered (the one-time rule bent).
    repeat = fields.BooleanField(default=False)
    # The hall admin's approval that allowed a repeat notice (none for the main hall's own notices).
    request: fields.ForeignKeyNullableRelation[CorrectionRequest] = fields.ForeignKeyField(
        "palmhall.CorrectionRequest", related_name="notices", null=True, on_delete=fields.RESTRICT
    )
    # The outbox event that told the resident: amending the open notice updates that message, never a second one.
    announced_event_id = fields.UUIDField(null=True)
    amended_at = fields.DatetimeField(null=True)

    class Meta:
        table = "correction_notice"
        unique_together = (("case", "round"),)


class CorrectionRequest(Model):
    """A clerk asks for a further notice on a case whose notice was answered, and a hall admin approves or refuses."""

    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "palmhall.Case", related_name="notice_requests", on_delete=fields.CASCADE
    )
    hall_id = fields.IntField(db_index=True)
    # What the further notice would list and say to the resident: [{code, name, reason, added_by}], note.
    items: fields.Field = fields.JSONField(default=list)
    note = fields.TextField(default="")
    # Why the clerk needs it, for the hall admin (never shown to the resident).
    reason = fields.TextField()
    requested_by = fields.IntField()  # staff id
    requested_at = fields.DatetimeField()
    state = fields.CharEnumField(NoticeRequestState, max_length=10, default=NoticeRequestState.PENDING,
                                 db_index=True)
    decided_by = fields.IntField(null=True)
    decided_at = fields.DatetimeField(null=True)
    decision_reason = fields.TextField(default="")

    class Meta:
        table = "correction_request"


class HallSigningKey(Model):
    """A hall's certificate signing key. The private key is encrypted with the data key ring."""

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Model] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="signing_keys", on_delete=fields.RESTRICT
    )
    key_id = fields.CharField(max_length=40, unique=True)
    algorithm = fields.CharField(max_length=16)  # Ed25519 now, SM2 later
    public_key = fields.TextField()  # base64 of the raw public key
    private_key_enc = fields.TextField()
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hall_signing_key"


class Certificate(Model):
    """An e-certificate (电子证照) with GB/T 36903 metadata, signed by its hall's key over every stored field."""

    id = fields.BigIntField(primary_key=True)
    cert_no = fields.CharField(max_length=40, unique=True)  # 证照编号
    cert_type = fields.CharField(max_length=64)  # 证照类型名称
    case: fields.ForeignKeyNullableRelation[Case] = fields.ForeignKeyField(
        "palmhall.Case", related_name="certificates", null=True, on_delete=fields.RESTRICT
    )
    holder_resident_id = fields.BigIntField(null=True, db_index=True)
    holder_hash = fields.CharField(max_length=64, db_index=True)
    holder_name_enc = fields.TextField()
    holder_id_number_enc = fields.TextField()
    item_code = fields.CharField(max_length=40)
    issuing_department = fields.CharField(max_length=100)  # 证照颁发机构
    hall: fields.ForeignKeyRelation[Model] = fields.ForeignKeyField(
        "palmhall.Hall", related_name="certificates", on_delete=fields.RESTRICT
    )
    issued_on = fields.DateField()
    valid_from = fields.DateField()
    valid_until = fields.DateField(null=True)  # null is 长期
    # Further surface fields of the certificate (证照照面信息), no personal data.
    extra: fields.Field = fields.JSONField(default=dict)
    status = fields.CharEnumField(CertificateStatus, max_length=8, default=CertificateStatus.VALID)
    revoked_at = fields.DatetimeField(null=True)
    revoke_reason = fields.CharField(max_length=200, default="")
    algorithm = fields.CharField(max_length=16)
    signing_key: fields.ForeignKeyRelation[HallSigningKey] = fields.ForeignKeyField(
        "palmhall.HallSigningKey", related_name="certificates", on_delete=fields.RESTRICT
    )
    signature = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "certificate"


class Evaluation(Model):
    """好差评: one rating per case, five levels (5 非常满意 down to 1 非常不满意)."""

    id = fields.BigIntField(primary_key=True)
    case: fields.OneToOneRelation[Case] = fields.OneToOneField(
        "palmhall.Case", related_name="evaluation", on_delete=fields.CASCADE
    )
    resident_id = fields.BigIntField(db_index=True)
    hall_id = fields.IntField(db_index=True)
    item_id = fields.IntField()
    counter_id = fields.IntField(null=True)
    level = fields.SmallIntField()
    comment = fields.TextField(default="")
    created_at = fields.DatetimeField()

    class Meta:
        table = "evaluation"


class Rectification(Model):
    """整改: a bad rating answered in writing by the hall admin within 15 working days."""

    id = fields.BigIntField(primary_key=True)
    evaluation: fields.OneToOneRelation[Evaluation] = fields.OneToOneField(
        "palmhall.Evaluation", related_name="rectification", on_delete=fields.CASCADE
    )
    hall_id = fields.IntField(db_index=True)
    limit_days = fields.IntField()  # working days allowed, kept to work the due date out again
    due_on = fields.DateField()
    yellow_on = fields.DateField(null=True)
    due_provisional = fields.BooleanField(default=False)
    state = fields.CharEnumField(TicketState, max_length=8, default=TicketState.OPEN)
    response = fields.TextField(default="")
    closed_by = fields.IntField(null=True)
    closed_at = fields.DatetimeField(null=True)
    warning_level = fields.CharEnumField(WarningLevel, max_length=8, default=WarningLevel.NONE)
    created_at = fields.DatetimeField()

    class Meta:
        table = "rectification"


class Complaint(Model):
    """A complaint or question from a resident, answered by staff within a working-day limit."""

    id = fields.BigIntField(primary_key=True)
    resident_id = fields.BigIntField(db_index=True)
    kind = fields.CharEnumField(ComplaintKind, max_length=10)
    hall_id = fields.IntField(db_index=True)
    case_id = fields.BigIntField(null=True)
    content = fields.TextField()
    limit_days = fields.IntField()  # working days allowed, kept to work the due date out again
    due_on = fields.DateField()
    yellow_on = fields.DateField(null=True)
    due_provisional = fields.BooleanField(default=False)
    state = fields.CharEnumField(TicketState, max_length=8, default=TicketState.OPEN)
    answer = fields.TextField(default="")
    answered_by = fields.IntField(null=True)
    answered_at = fields.DatetimeField(null=True)
    warning_level = fields.CharEnumField(WarningLevel, max_length=8, default=WarningLevel.NONE)
    created_at = fields.DatetimeField()

    class Meta:
        table = "complaint"
