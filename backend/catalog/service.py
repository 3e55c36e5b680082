"""Catalog operations other packages call (halls for now)."""

from __future__ import annotations

import re

from tortoise.backends.base.client import BaseDBAsyncClient

from backend.catalog.models import Hall
from backend.errors import DomainError, register_codes

register_codes({
    "catalog.hall_not_found": (404, "未找到该服务大厅"),
    "catalog.hall_exists": (409, "该服务大厅编码已存在"),
})

_REGION = re.compile(r"^\d{6}(\d{3})?$")


async def get_hall(*, code: str | None = None, hall_id: int | None = None) -> Hall:
    hall = await (Hall.get_or_none(code=code) if code is not None else Hall.get_or_none(id=hall_id))
    if hall is None:
        raise DomainError("catalog.hall_not_found")
    return hall


async def create_hall(*, code: str, name: str, region_code: str, address: str = "",
                      using_db: BaseDBAsyncClient | None = None) -> Hall:
    if not _REGION.match(region_code):
        raise ValueError("区划代码应为6位（县级）或9位（乡镇级）数字")
    if await Hall.filter(code=code).using_db(using_db).exists():
        raise DomainError("catalog.hall_exists")
    return await Hall.create(code=code, name=name, region_code=region_code, address=address,
                             using_db=using_db)
