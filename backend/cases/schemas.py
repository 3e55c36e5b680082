"""Requests the cases surfaces accept, validated once here and shared by every audience."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from backend.bounds import Day, Id, Id32, Input
from backend.identity.personal import IdNumber, Phone, validate_name

_CODE = r"^[A-Za-z0-9_-]{1,32}$"
MAX_FORM_FIELDS = 50


class _In(Input):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MaterialIn(_In):
    """One checklist entry satisfied: by a fresh upload, a reused earlier material, an e-certificate, or paper."""

    code: str = Field(pattern=_CODE, description="材料清单中的材料编号")
    upload_id: Id | None = Field(default=None, description="本人上传的文件")
    reuse_id: Id | None = Field(default=None, description="材料库中以往办件已受理的材料")
    certificate_id: Id | None = Field(default=None, description="本人持有的电子证照")
    paper: bool = Field(default=False, description="窗口收取纸质材料（仅窗口代办）")

    @model_validator(mode="after")
    def _exactly_one(self) -> MaterialIn:
        given = [self.upload_id is not None, self.reuse_id is not None, self.certificate_id is not None, self.paper]
        if sum(given) != 1:
            raise ValueError("每项材料须且只须提供一种来源：upload_id、reuse_id、certificate_id 或 paper")
        return self


class DeliveryIn(_In):
    method: Literal["pickup", "post"] = Field(default="pickup", description="pickup 窗口领取 / post 邮寄")
    recipient: str | None = Field(default=None, max_length=30)
    phone: Phone | None = None
    address: str | None = Field(default=None, min_length=5, max_length=200)

    @field_validator("recipient")
    @classmethod
    def _recipient(cls, v: str | None) -> str | None:
        return None if v is None else validate_name(v)

    @model_validator(mode="after")
    def _address_for_post(self) -> DeliveryIn:
        if self.method == "post" and not (self.recipient and self.phone and self.address):
            raise ValueError("邮寄送达须填写收件人、手机号码和地址")
        return self


FormValue = str | int | float | bool | None


class CaseIn(_In):
    item_code: str = Field(min_length=1, max_length=40, description="事项实施编码")
    hall_id: Id32 = Field(description="办理的服务大厅")
    form: dict[str, FormValue] = Field(default_factory=dict, description="申请表字段")
    materials: list[MaterialIn] = Field(default_factory=list, max_length=100)
    delivery: DeliveryIn = Field(default_factory=DeliveryIn)

    @field_validator("form")
    @classmethod
    def _form(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(v) > MAX_FORM_FIELDS:
            raise ValueError(f"申请表字段不能超过{MAX_FORM_FIELDS}项")
        for key, value in v.items():
            if not 1 <= len(key) <= 64 or (isinstance(value, str) and len(value) > 2000):
                raise ValueError("申请表字段名须为1至64字，字段内容不超过2000字")
        return v


class WalkInCaseIn(CaseIn):
    """A case a clerk opens for someone at the counter: identified by name and ID number."""

    applicant_name: str
    applicant_id_number: IdNumber

    @field_validator("applicant_name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validate_name(v)


class CorrectionIn(_In):
    materials: list[MaterialIn] = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=500)


class WithdrawIn(_In):
    reason: str = Field(default="", max_length=500)


class Action(StrEnum):
    ACCEPT = "accept"
    REQUEST_CORRECTION = "request_correction"
    START_REVIEW = "start_review"
    APPROVE = "approve"
    REJECT = "reject"
    ISSUE_CERTIFICATE = "issue_certificate"
    DELIVER = "deliver"
    CLOSE = "close"


class NoticeItemIn(_In):
    code: str = Field(pattern=_CODE, description="材料编号")
    reason: str = Field(default="", max_length=200, description="需补正的原因，如“复印件不清晰”")


class NoticeRequestIn(_In):
    """A clerk asks a hall admin to approve a further correction notice (再次告知) after an answered one."""

    items: list[NoticeItemIn] = Field(min_length=1, max_length=100, description="拟要求补正的材料")
    note: str = Field(default="", max_length=500, description="告知申请人的说明（批准后随告知书送达）")
    reason: str = Field(min_length=5, max_length=500,
                        description="需要再次告知的理由（供大厅管理员审批，申请人不可见）")


class NoticeDecisionIn(_In):
    """A hall admin's answer to a request for a further notice: approve or refuse, always with a reason."""

    approve: bool = Field(description="true 批准（告知书随即送达申请人）/ false 不批准")
    reason: str = Field(min_length=2, max_length=500, description="审批意见")


class TransitionIn(_In):
    action: Action
    reason: str = Field(default="", max_length=500)
    items: list[NoticeItemIn] = Field(default_factory=list, max_length=100, description="要求补正的材料")
    tracking_no: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{6,40}$", description="快递单号")
    counter_id: Id32 | None = Field(default=None, description="受理窗口")
    valid_until: Day | None = Field(default=None, description="电子证照有效期截止日期（缺省为长期）")


class Satisfaction(StrEnum):
    """好差评 five levels; the number is what is stored and counted."""

    VERY_SATISFIED = "非常满意"
    SATISFIED = "满意"
    FAIRLY_SATISFIED = "基本满意"
    DISSATISFIED = "不满意"
    VERY_DISSATISFIED = "非常不满意"


LEVELS = {Satisfaction.VERY_SATISFIED: 5, Satisfaction.SATISFIED: 4, Satisfaction.FAIRLY_SATISFIED: 3,
          Satisfaction.DISSATISFIED: 2, Satisfaction.VERY_DISSATISFIED: 1}
LEVEL_LABELS = {n: s.value for s, n in LEVELS.items()}


class EvaluationIn(_In):
    level: Satisfaction = Field(description="非常满意、满意、基本满意、不满意、非常不满意")
    comment: str = Field(default="", max_length=500)


class ComplaintIn(_In):
    kind: Literal["complaint", "question"] = Field(description="complaint 投诉 / question 咨询")
    hall_id: Id32
    case_no: str | None = Field(default=None, max_length=32)
    content: str = Field(min_length=5, max_length=2000)


class AnswerIn(_In):
    answer: str = Field(min_length=2, max_length=2000)


class CloseRectificationIn(_In):
    response: str = Field(min_length=10, max_length=2000, description="整改情况的书面答复，申请人可见")


class RevokeIn(_In):
    reason: str = Field(min_length=2, max_length=200)
