"""Request and response shapes of the mini-program surface."""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator

from backend.bounds import Input
from backend.identity.personal import IdNumber, Phone, validate_name


class Page(Input):
    """The paging of a list: every paged list answers it back with the `total`."""

    model_config = ConfigDict(extra="ignore")
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class WeChatLogin(Input):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=128, description="the code from wx.login")


class AlipayLogin(Input):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    auth_code: str = Field(min_length=1, max_length=128, alias="authCode",
                           description="the authCode from my.getAuthCode")


class Refresh(Input):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=10, max_length=200)


class RealName(Input):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=30)
    id_number: IdNumber
    phone: Phone

    _name = field_validator("name")(lambda v: validate_name(v))


class LinkConfirm(Input):
    model_config = ConfigDict(extra="forbid")
    challenge_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="`link.challenge_id` from the 202 answer")
    code: str = Field(pattern=r"^[0-9]{6}$", description="the six-digit code texted to the phone on record")
