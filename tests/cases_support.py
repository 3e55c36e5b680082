"""What the cases tests share: a hall with items, staff and residents logged in, and real small files."""

from __future__ import annotations

import io
import json
import secrets
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from backend import clock
from backend.catalog import service as catalog
from backend.catalog.codes import make_item_code, make_uscc
from backend.catalog.schemas import ItemIn
from backend.identity import service as identity
from backend.identity.models import StaffRole
from kiosks.signing import signed_headers
from tests.conftest import Live, Platforms
from tests.test_identity import auth, make_id, wechat_login

AGENCY = make_uscc("11330106002501730")
RESIDENCE = make_item_code(AGENCY, "4000607016000")  # 居住证明: free, issues an e-certificate
LICENCE = make_item_code(AGENCY, "4000607017000")  # with a fee, and a certificate
SIMPLE = make_item_code(AGENCY, "4000607018000")  # free, no certificate, delivered on paper


# ---- files ----------------------------------------------------------------------------------


def pdf_bytes(text: str = "palmhall", *, catalog: bytes = b"", extra: Sequence[bytes] = ()) -> bytes:
    """A real one-page PDF (with its cross-reference table) that a browser's viewer opens, showing `text`.
    `catalog` adds entries to the document catalog, `extra` adds objects numbered from 6."""
    shown = text.encode("ascii", "replace").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    stream = b"BT /F1 24 Tf 30 120 Td (" + shown + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R" + (b" " + catalog if catalog else b"") + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 420 297] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        *extra,
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def png_bytes(seed: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixel = zlib.compress(b"\x00" + bytes([seed % 256, 0, 0]))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixel) + chunk(b"IEND", b"")


def image_bytes(kind: str, seed: int = 0, size: tuple[int, int] = (2, 2), **options: Any) -> bytes:
    """A real image of one colour, written by Pillow (installed with qrcode[pil]) as `kind` (PNG, JPEG, WEBP)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (seed % 256, 128, 64)).save(out, kind, **options)
    return out.getvalue()


def jpeg_bytes(seed: int = 0, size: tuple[int, int] = (2, 2)) -> bytes:
    """A real baseline JPEG (JFIF, tables, frame header, scan) that a browser decodes."""
    return image_bytes("JPEG", seed, size, quality=90)


def webp_bytes(seed: int = 0, size: tuple[int, int] = (2, 2), *, lossless: bool = False) -> bytes:
    """A real WebP: lossy (VP8) by default, lossless (VP8L) on request."""
    return image_bytes("WEBP", seed, size, lossless=lossless)


# ---- people and places ----------------------------------------------------------------------


ZHANG = {"name": "张三丰", "id_number": make_id("11010519800101123"), "phone": "13812345678"}
LI = {"name": "李四", "id_number": make_id("33010619951231004"), "phone": "13987654321"}
WANG = {"name": "王小明", "id_number": make_id("33010619900505201"), "phone": "13700001111"}


def item_row(code: str, name: str, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "code": code, "name": name, "department": "转塘街道办事处", "subject_type": "person",
        "materials": [
            {"code": "ID", "name": "居民身份证", "form": "original", "certificate_type": "居民身份证"},
            {"code": "FORM", "name": "申请表", "form": "original"},
            {"code": "LEASE", "name": "租赁合同", "form": "copy"},
            {"code": "PHOTO", "name": "近期照片", "form": "electronic", "required": False},
        ],
        "statutory_days": 10, "promised_days": 5, "fees": [], "online_depth": 3,
        "channels": ["counter", "mini_program", "kiosk"], "halls": ["HX", "HY"], "effective_from": "2025-01-01",
    }
    row.update(over)
    return row


@dataclass
class World:
    halls: dict[str, int]
    clerk: dict[str, str]  # HX clerk's auth header
    admin: dict[str, str]  # HX hall admin
    other_clerk: dict[str, str]  # HY clerk


CHOSEN_PASSWORD = "窗口-chosen-passw0rd"  # what settled_staff accounts change their one-time password to


async def settled_staff(client: httpx.AsyncClient, username: str, hall: str, role: StaffRole, *,
                        display_name: str | None = None) -> str:
    """A staff account past its first login, got there the way every real one is: created with a one-time
    password, logged in, that password changed through the API. Returns the password now in force."""
    _, one_time = await identity.create_staff(username=username, display_name=display_name or username,
                                              hall_code=hall, role=role)
    r = await client.post("/api/v1/staff/auth/login", json={"username": username, "password": one_time})
    assert r.status_code == 200 and r.json()["must_change_password"] is True, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    r = await client.post("/api/v1/staff/auth/password", headers=headers,
                          json={"old_password": one_time, "new_password": CHOSEN_PASSWORD})
    assert r.status_code == 204, r.text
    return CHOSEN_PASSWORD


async def staff_headers(live: Live, username: str, hall: str, role: StaffRole) -> dict[str, str]:
    password = await settled_staff(live.client, username, hall, role)
    r = await live.client.post("/api/v1/staff/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200 and r.json()["must_change_password"] is False, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def build_world(live: Live) -> World:
    x = await catalog.create_hall(code="HX", name="转塘街道便民服务中心", region_code="330106011")
    y = await catalog.create_hall(code="HY", name="双浦镇便民服务中心", region_code="330106012")
    for row in (
        item_row(RESIDENCE, "居住证明开具", certificate_type="居住证明"),
        item_row(LICENCE, "摊位经营许可", certificate_type="摊位经营许可证",
                 fees=[{"name": "工本费", "basis": "浙价费〔2020〕1号", "amount_fen": 1250}]),
        item_row(SIMPLE, "困难证明开具", materials=[{"code": "FORM", "name": "申请表", "form": "original"}],
                 statutory_days=3, promised_days=2),
    ):
        await catalog.upsert_item(row=ItemIn.model_validate(row))
    return World(
        halls={"HX": x.id, "HY": y.id},
        clerk=await staff_headers(live, "hx.clerk", "HX", StaffRole.CLERK),
        admin=await staff_headers(live, "hx.admin", "HX", StaffRole.HALL_ADMIN),
        other_clerk=await staff_headers(live, "hy.clerk", "HY", StaffRole.CLERK),
    )


async def resident(live: Live, platforms: Platforms, person: dict[str, str] | None = None) -> dict[str, str]:
    """A logged-in resident, real-name bound when `person` is given."""
    tokens = await wechat_login(live, platforms)
    headers = auth(tokens)
    if person is not None:
        r = await live.client.put("/api/v1/mp/me/real-name", json=person, headers=headers)
        assert r.status_code == 200, r.text
    return headers


async def upload(live: Live, headers: dict[str, str], data: bytes, name: str = "scan.pdf",
                 content_type: str = "application/pdf") -> httpx.Response:
    return await live.client.post("/api/v1/mp/uploads", files={"file": (name, data, content_type)}, headers=headers)


async def upload_id(live: Live, headers: dict[str, str], data: bytes | None = None, name: str = "scan.pdf") -> int:
    r = await upload(live, headers, data if data is not None else pdf_bytes(secrets.token_hex(4)), name)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def application(hall_id: int, item: str = RESIDENCE, materials: list[dict[str, Any]] | None = None,
                **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"item_code": item, "hall_id": hall_id, "form": {"居住地址": "象山路1号3幢201室"},
                            "materials": materials or [], "delivery": {"method": "pickup"}}
    body.update(over)
    return body


async def act(live: Live, headers: dict[str, str], case_no: str, action: str, **extra: Any) -> httpx.Response:
    return await live.client.post(f"/api/v1/staff/cases/{case_no}/transitions",
                                  json={"action": action, **extra}, headers=headers)


def kiosk_headers(device_id: str, secret: str, method: str, path: str, body: bytes = b"",
                  extra: dict[str, str] | None = None) -> dict[str, str]:
    h = signed_headers(device_id=device_id, secret=secret, method=method, path_with_query=path, body=body,
                       timestamp=int(clock.now().timestamp()), nonce=secrets.token_urlsafe(16))
    return {**h, "Content-Type": "application/json", **(extra or {})}


async def kiosk_code(live: Live, headers: dict[str, str], hall_id: int | None = None) -> str:
    """What the resident's mini program shows a kiosk (as a QR) so that it may apply for them, once."""
    r = await live.client.post("/api/v1/mp/kiosk-codes", json={"hall_id": hall_id} if hall_id else {},
                               headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["code"])


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


async def drain_without_main_hall() -> int:
    """Run the outbox until nothing is due, with every handler but the main hall's: no main hall answers in these
    tests, and its pushes, retried, would hold back each case's later events (one ordering key per case)."""
    from backend.jobs.outbox import Registry, registry
    from backend.jobs.worker import Worker, WorkerConfig

    reg = Registry()
    for topic, handlers in registry.handlers.items():
        for fn in handlers:
            if not fn.__module__.startswith("backend.hall_sync"):
                reg.on(topic)(fn)
    worker = Worker(WorkerConfig(lease_seconds=30, backoff_base=0.01, backoff_max=0.01), handlers=reg)
    total = 0
    while n := await worker.run_once():
        total += n
    return total
