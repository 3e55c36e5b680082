"""The hall display board (/board/{hall_id}): the public queue stream on the hall's big screen."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.web import page

bp = Blueprint("board_pages")


@bp.get("/board/<hall_id:int32>", ctx_public=True)
async def hall_board(request: Request, hall_id: int) -> HTTPResponse:
    return await page(request, "board/board.html", hall_id=hall_id)
