"""Anonymous catalog routes: search service items, read one item's guide (办事指南), list halls."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.catalog import service as catalog
from backend.catalog.schemas import Guide, GuideQuery, HallList, ItemPage, SearchQuery
from backend.http import parse

# No url_prefix: the public surface (backend/public/surface.py) mounts its blueprints under /api/v1.
bp = Blueprint("public_catalog")

# Catalog answers change only on an import: a short shared cache spares the database a rush of readers.
CACHE = {"Cache-Control": "public, max-age=60"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline({**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}},
                           defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with nested models written in place: the OpenAPI document has no
    components for pydantic's local `$defs` to point at."""
    schema = model.model_json_schema()
    return {"application/json": _inline(schema, schema.get("$defs", {}))}


def _error() -> dict[str, Any]:
    text = {"type": "string"}
    return {"application/json": {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": text, "message": text, "details": {"type": "object"}}}}}}


def _query(request: Request) -> dict[str, str]:
    # One value per name: a repeated parameter takes its first value.
    return {k: v[0] for k, v in request.args.items() if v}


@bp.get("/catalog/items")
@openapi.summary("Search service items (事项)")
@openapi.description("Every word of `q` must appear in the name, keywords or department. Active items only.")
@openapi.tag("catalog")
@openapi.parameter("q", str, "query", description="关键词，如“居住证明”或“养老 参保”")
@openapi.parameter("department", str, "query", description="实施部门（全称）")
@openapi.parameter("subject_type", str, "query", description="person 自然人 / legal_entity 法人")
@openapi.parameter("hall", int, "query", description="服务大厅 id（见 /halls）")
@openapi.parameter("page", int, "query", description="页码，从1开始")
@openapi.parameter("page_size", int, "query", description="每页条数，1–100，默认20")
@openapi.response(200, _schema(ItemPage), "items of this page and the total")
@openapi.response(422, _error(), "a query parameter is invalid (validation.failed, each field listed)")
async def search(request: Request) -> HTTPResponse:
    query = parse(SearchQuery, _query(request))
    items, total = await catalog.search_items(
        keyword=query.q, department=query.department,
        subject_type=query.subject_type.value if query.subject_type else None, hall_id=query.hall,
        limit=query.page_size, offset=(query.page - 1) * query.page_size,
    )
    page = ItemPage(items=items, total=total, page=query.page, page_size=query.page_size)
    return json(page.model_dump(mode="json"), headers=CACHE, ensure_ascii=False)


@bp.get("/catalog/items/<code:item_code>")
@openapi.summary("One service item's full guide (办事指南)")
@openapi.description("Materials, fees (integer fen and a display string), time limits, channels, halls. "
                     "`version` reads an earlier version, as a case that started under it sees it.")
@openapi.tag("catalog")
@openapi.parameter("version", int, "query", description="版本号，缺省为当前版本")
@openapi.response(200, _schema(Guide), "the guide")
@openapi.response(404, _error(), "catalog.item_not_found or catalog.version_not_found")
async def guide(request: Request, code: str) -> HTTPResponse:
    query = parse(GuideQuery, _query(request))
    return json(await catalog.get_guide(code=code, version=query.version), headers=CACHE, ensure_ascii=False)


@bp.get("/halls")
@openapi.summary("Service halls with their counters and weekly opening hours")
@openapi.tag("catalog")
@openapi.response(200, _schema(HallList), "active halls")
async def halls(request: Request) -> HTTPResponse:
    return json({"halls": await catalog.list_halls()}, headers=CACHE, ensure_ascii=False)
