"""Material uploads through the HTTP API: every refusal (pixel bombs and files of two types among them), the
header readers behind them, content-addressed storage, and the S3 store."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import random
import struct
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sanic import Request, Sanic
from sanic.response import HTTPResponse, empty, raw

from backend.audit.models import AuditEntry
from backend.cases import files
from backend.cases.files import S3Config, S3FileStore, check_file
from backend.cases.formats import foreign_content, image_size, jpeg_size, png_size, sniff, webp_size
from backend.cases.models import Upload
from backend.errors import DomainError
from tests.cases_support import image_bytes, jpeg_bytes, pdf_bytes, png_bytes, resident, upload, webp_bytes
from tests.conftest import Live, Platforms, start_app, stop_app

MAX = 4096
PIXELS = 40_000_000  # the default UPLOAD_MAX_PIXELS


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
def settings_overrides(files_dir: Path) -> dict[str, Any]:
    return {"files_dir": str(files_dir), "upload_max_bytes": MAX, "upload_daily_limit": 6}


def multipart(name: bytes, data: bytes, *, field: bytes = b"file", filename_param: bytes | None = None,
              content_type: bytes = b"application/pdf") -> tuple[bytes, dict[str, str]]:
    """A multipart body written byte for byte, so names reach the server exactly as a client could send them."""
    boundary = uuid.uuid4().hex
    param = filename_param if filename_param is not None else b'; filename="' + name + b'"'
    body = (b"--" + boundary.encode() + b"\r\n"
            b'Content-Disposition: form-data; name="' + field + b'"' + param
            + b"\r\nContent-Type: " + content_type + b"\r\n\r\n" + data + b"\r\n--" + boundary.encode() + b"--\r\n")
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def post_raw(live: Live, headers: dict[str, str], name: bytes, data: bytes, **kw: Any) -> httpx.Response:
    body, h = multipart(name, data, **kw)
    return await live.client.post("/api/v1/mp/uploads", content=body, headers={**headers, **h})


async def test_pdf_jpeg_png_and_webp_are_stored_under_their_hash(live: Live, platforms: Platforms, files_dir: Path
                                                                  ) -> None:
    me = await resident(live, platforms)
    for data, name, kind in ((pdf_bytes(), "申请表.pdf", "application/pdf"), (jpeg_bytes(), "身份证.jpg", "image/jpeg"),
                             (png_bytes(), "照片.png", "image/png"), (webp_bytes(), "微信图片.webp", "image/webp")):
        r = await upload(live, me, data, name, "application/octet-stream")
        assert r.status_code == 201, r.text
        digest = hashlib.sha256(data).hexdigest()
        assert r.json()["content_type"] == kind and r.json()["sha256"] == digest and r.json()["name"] == name
        stored = files_dir / digest[:2] / digest
        assert stored.read_bytes() == data
    # Nothing in the store carries a name a client chose.
    assert sorted(p.name for p in files_dir.rglob("*") if p.is_file()) == sorted(
        hashlib.sha256(d).hexdigest() for d in (pdf_bytes(), jpeg_bytes(), png_bytes(), webp_bytes()))
    assert await Upload.all().count() == 4
    assert await AuditEntry.filter(action="upload.stored").count() == 4


async def test_the_bytes_decide_the_type_not_the_name_or_declared_type(live: Live, platforms: Platforms) -> None:
    me = await resident(live, platforms)
    r = await upload(live, me, png_bytes(), "contract.pdf", "application/pdf")
    assert r.status_code == 201 and r.json()["content_type"] == "image/png"
    # The same bytes twice: two uploads, one stored file.
    again = await upload(live, me, png_bytes(), "again.png", "image/png")
    assert again.json()["sha256"] == r.json()["sha256"] and again.json()["id"] != r.json()["id"]


@pytest.mark.parametrize(("data", "name", "status", "code"), [
    (b"", "empty.pdf", 422, "upload.empty"),
    (pdf_bytes() + b"x" * MAX, "big.pdf", 413, "upload.too_large"),
    (b"MZ\x90\x00" + b"\x00" * 100, "virus.pdf", 415, "upload.type_not_allowed"),
    (b"hello, I am text\n", "note.png", 415, "upload.type_not_allowed"),
    (b"GIF89a\x01\x00\x01\x00", "anim.jpg", 415, "upload.type_not_allowed"),
    (b"<html><script>alert(1)</script></html>", "page.pdf", 415, "upload.type_not_allowed"),
    (pdf_bytes()[:-10], "cut.pdf", 422, "upload.truncated"),
    (jpeg_bytes()[:-2], "cut.jpg", 422, "upload.truncated"),
    (png_bytes()[:-6], "cut.png", 422, "upload.truncated"),
    (pdf_bytes(), "../../etc/passwd.pdf", 422, "upload.bad_name"),
    (pdf_bytes(), "C:\\Users\\me\\scan.pdf", 422, "upload.bad_name"),
    (pdf_bytes(), "长" * 101 + ".pdf", 422, "upload.bad_name"),
    (pdf_bytes(), "invoice\u202egpj.exe", 422, "upload.bad_name"),
])
async def test_refusals_have_clear_codes(live: Live, platforms: Platforms, files_dir: Path, data: bytes, name: str,
                                         status: int, code: str) -> None:
    me = await resident(live, platforms)
    r = await post_raw(live, me, name.encode(), data)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert r.json()["error"]["message"]  # a sentence for the person
    assert await Upload.all().count() == 0
    assert not files_dir.exists() or not any(p.is_file() for p in files_dir.rglob("*"))


async def test_names_with_nul_or_encoded_separators_are_refused(live: Live, platforms: Platforms) -> None:
    me = await resident(live, platforms)
    r = await post_raw(live, me, b"scan\x00.pdf", pdf_bytes())
    assert (r.status_code, r.json()["error"]["code"]) == (422, "upload.bad_name")
    r = await post_raw(live, me, b"", pdf_bytes(), filename_param=b"; filename*=UTF-8''..%2F..%2Fx.pdf")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "upload.bad_name")
    r = await post_raw(live, me, b"", pdf_bytes(), filename_param=b"; filename*=UTF-8''scan%00.pdf")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "upload.bad_name")
    r = await post_raw(live, me, b"a" * 300 + b".pdf", pdf_bytes())
    assert (r.status_code, r.json()["error"]["code"]) == (422, "upload.bad_name")
    assert await Upload.all().count() == 0


async def test_missing_or_extra_files_are_refused(live: Live, platforms: Platforms) -> None:
    me = await resident(live, platforms)
    r = await live.client.post("/api/v1/mp/uploads", json={"file": "not a file"}, headers=me)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "upload.missing_file")
    r = await post_raw(live, me, b"a.pdf", pdf_bytes(), field=b"document")
    assert (r.status_code, r.json()["error"]["code"]) == (400, "upload.missing_file")
    r = await live.client.post("/api/v1/mp/uploads", headers=me, files=[
        ("file", ("a.pdf", pdf_bytes(), "application/pdf")), ("file", ("b.pdf", pdf_bytes("b"), "application/pdf"))])
    assert (r.status_code, r.json()["error"]["code"]) == (400, "upload.missing_file")
    r = await live.client.post("/api/v1/mp/uploads", files={"file": ("a.pdf", pdf_bytes(), "application/pdf")})
    assert r.status_code == 401  # and only a logged-in resident uploads


async def test_daily_count_per_resident(live: Live, platforms: Platforms, frozen_clock: Any) -> None:
    # Ten minutes before midnight in Shanghai, so the day turns while the login is still fresh.
    frozen_clock.set(dt.datetime(2026, 3, 2, 15, 50, tzinfo=dt.UTC))
    me = await resident(live, platforms)
    other = await resident(live, platforms)
    codes = [(await upload(live, me, pdf_bytes(str(i)))).status_code for i in range(7)]
    assert codes == [201] * 6 + [429]
    r = await upload(live, me, pdf_bytes("x"))
    assert r.json()["error"]["code"] == "upload.daily_limit"
    assert (await upload(live, other, pdf_bytes("y"))).status_code == 201  # limits are per resident
    frozen_clock.advance(11 * 60)
    assert (await upload(live, me, pdf_bytes("next day"))).status_code == 201


def test_check_file_directly() -> None:
    assert check_file(pdf_bytes() + b"\r\n", name="a.pdf", max_bytes=MAX, max_pixels=PIXELS
                      ).content_type == "application/pdf"
    assert check_file(jpeg_bytes(), name=None, max_bytes=MAX, max_pixels=PIXELS).display_name == "未命名文件"
    with pytest.raises(DomainError) as exc:
        check_file(b"%PDF-1.7\n" + b"0" * 100, name="a.pdf", max_bytes=MAX, max_pixels=PIXELS)
    assert exc.value.code == "upload.truncated"
    with pytest.raises(DomainError) as exc:
        check_file(pdf_bytes() + b" " * MAX, name="a.pdf", max_bytes=MAX, max_pixels=PIXELS)
    assert (exc.value.code, exc.value.details["reason"]) == ("upload.too_large", "bytes")


# ---- images too big to decode, and files of two types ------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A pixel bomb: IHDR claims width × height (RGB), the IDAT is a few bytes of zlib, the IEND is valid."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


def png_with(*chunks: bytes, base: bytes | None = None) -> bytes:
    """A real PNG with more chunks just before its IEND."""
    real = base if base is not None else png_bytes()
    return real[:-12] + b"".join(chunks) + real[-12:]


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is rewritten to claim width × height."""
    real = jpeg_bytes()
    sof = real.index(b"\xff\xc0")
    return real[:sof + 5] + struct.pack(">HH", height, width) + real[sof + 9:]


def jpeg_with(marker: int, payload: bytes, base: bytes | None = None) -> bytes:
    """A real JPEG with one more segment right after SOI (where cameras put APP1/EXIF)."""
    real = base if base is not None else jpeg_bytes()
    return real[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + real[2:]


def webp_claiming(kind: str, width: int, height: int) -> bytes:
    """A real WebP whose first chunk claims width × height: VP8 (lossy), VP8L (lossless) or VP8X (canvas)."""
    if kind == "VP8X":
        vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (
            height - 1).to_bytes(3, "little")
        body = b"WEBP" + vp8x + webp_bytes()[12:]
        return b"RIFF" + struct.pack("<I", len(body)) + body
    if kind == "VP8L":
        real = webp_bytes(lossless=True)
        bits = struct.unpack_from("<I", real, 21)[0] & ~0x0FFFFFFF | (width - 1) | (height - 1) << 14
        return real[:21] + struct.pack("<I", bits) + real[25:]
    real = webp_bytes()
    return real[:26] + struct.pack("<HH", width, height) + real[30:]


async def nothing_stored(files_dir: Path) -> None:
    assert await Upload.all().count() == 0
    assert await AuditEntry.filter(action="upload.stored").count() == 0
    assert not files_dir.exists() or not any(p.is_file() for p in files_dir.rglob("*"))


@pytest.mark.parametrize(("data", "width", "height"), [
    pytest.param(png_claiming(20000, 20000), 20000, 20000, id="png"),
    pytest.param(jpeg_claiming(10000, 10000), 10000, 10000, id="jpeg"),
    pytest.param(webp_claiming("VP8X", 20000, 20000), 20000, 20000, id="webp-vp8x"),
    pytest.param(webp_claiming("VP8L", 16384, 16384), 16384, 16384, id="webp-vp8l"),
    pytest.param(webp_claiming("VP8 ", 16383, 16383), 16383, 16383, id="webp-vp8"),
])
async def test_pixel_bombs_are_refused_and_nothing_is_stored(live: Live, platforms: Platforms, files_dir: Path,
                                                             data: bytes, width: int, height: int) -> None:
    assert len(data) < 1024  # a few hundred bytes that would take gigabytes to decode
    me = await resident(live, platforms)
    r = await post_raw(live, me, b"photo.jpg", data, content_type=b"image/jpeg")
    assert (r.status_code, r.json()["error"]["code"]) == (413, "upload.too_large"), r.text
    assert r.json()["error"]["details"] == {"reason": "pixels", "max_pixels": PIXELS, "width": width,
                                            "height": height}
    assert r.json()["error"]["message"]
    await nothing_stored(files_dir)


class TestPixelLimit:
    @pytest.fixture
    def settings_overrides(self, files_dir: Path) -> dict[str, Any]:
        return {"files_dir": str(files_dir), "upload_max_bytes": MAX, "upload_max_pixels": 12}

    @pytest.mark.parametrize(("kind", "options", "content_type"), [
        ("PNG", {}, "image/png"), ("JPEG", {}, "image/jpeg"), ("WEBP", {}, "image/webp"),
        ("WEBP", {"lossless": True}, "image/webp"),
    ])
    async def test_exactly_the_limit_is_accepted_one_pixel_more_is_not(
            self, live: Live, platforms: Platforms, kind: str, options: dict[str, Any], content_type: str) -> None:
        me = await resident(live, platforms)
        r = await upload(live, me, image_bytes(kind, 1, (4, 3), **options), "4x3", content_type)
        assert r.status_code == 201 and r.json()["content_type"] == content_type, r.text
        r = await upload(live, me, image_bytes(kind, 2, (13, 1), **options), "13x1", content_type)
        assert (r.status_code, r.json()["error"]["code"]) == (413, "upload.too_large"), r.text
        assert r.json()["error"]["details"] == {"reason": "pixels", "max_pixels": 12, "width": 13, "height": 1}
        assert await Upload.all().count() == 1


# The test helper's JPEG before it became a real one: SOI, APP0/JFIF, a comment, EOI, and no frame header.
NO_FRAME_JPEG = (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
                 b"\xff\xfe\x00\x0apalmhall\xff\xd9")


@pytest.mark.parametrize(("data", "content_type", "reason"), [
    pytest.param(NO_FRAME_JPEG, "image/jpeg", "no_size", id="jpeg-without-frame-header"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"Title\x00x") + png_bytes()[8:], "image/png", "no_size",
                 id="png-ihdr-not-first"),
    pytest.param(png_claiming(0, 10), "image/png", "zero_size", id="png-zero-width"),
    pytest.param(webp_claiming("VP8 ", 10, 0), "image/webp", "zero_size", id="webp-zero-height"),
])
async def test_images_whose_size_cannot_be_read_are_refused(live: Live, platforms: Platforms, files_dir: Path,
                                                            data: bytes, content_type: str, reason: str) -> None:
    me = await resident(live, platforms)
    r = await post_raw(live, me, b"photo", data, content_type=b"image/png")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "upload.damaged"), r.text
    assert r.json()["error"]["details"] == {"content_type": content_type, "reason": reason}
    await nothing_stored(files_dir)


def pdf_with_object_stream(obj: bytes) -> bytes:
    """A PDF whose object 7 sits compressed in an object stream (object 6), as PDF 1.5 writers keep
    dictionaries; the cross-reference stream that would point into it is left out (the check reads bytes)."""
    header = b"7 0 "
    packed = zlib.compress(header + obj)
    objstm = (b"<< /Type /ObjStm /N 1 /First %d /Filter /FlateDecode /Length %d >>\nstream\n"
              % (len(header), len(packed)) + packed + b"\nendstream")
    data = pdf_bytes(catalog=b"/OpenAction 7 0 R", extra=[objstm])
    assert obj not in data and b"/JavaScript" not in data  # hidden from a scan of the raw bytes
    return data


HTML_PAGE = b"<!DOCTYPE html><html><body><script>fetch('/api/v1/staff/cases')</script></body></html>"
JS_ACTION = b"<< /S /JavaScript /JS (app.alert\\(1\\)) >>"


@pytest.mark.parametrize(("data", "content_type", "reason", "found"), [
    pytest.param(png_with(png_chunk(b"tEXt", b"Comment\x00<script>alert(document.cookie)</script>")), "image/png",
                 "markup", "<script", id="png-script-in-text-chunk"),
    pytest.param(pdf_bytes(extra=[b"<< /Length %d >>\nstream\n" % len(HTML_PAGE) + HTML_PAGE + b"\nendstream"]),
                 "application/pdf", "markup", "<!doctype", id="pdf-with-html-page"),
    pytest.param(pdf_bytes(catalog=b"/OpenAction 6 0 R", extra=[JS_ACTION]), "application/pdf", "active_content",
                 "/JavaScript", id="pdf-javascript"),
    pytest.param(pdf_with_object_stream(JS_ACTION), "application/pdf", "active_content", "/JavaScript",
                 id="pdf-javascript-in-object-stream"),
    pytest.param(jpeg_with(0xFE, pdf_bytes()), "image/jpeg", "embedded_format", "PDF", id="jpeg-pdf-in-comment"),
    pytest.param(image_bytes("WEBP", xmp=b"<svg onload=alert(1)>"), "image/webp", "markup", "<svg",
                 id="webp-svg-in-metadata"),
])
async def test_files_that_are_also_another_type_are_refused(live: Live, platforms: Platforms, files_dir: Path,
                                                            data: bytes, content_type: str, reason: str,
                                                            found: str) -> None:
    me = await resident(live, platforms)
    r = await post_raw(live, me, b"scan", data)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "upload.mixed_content"), r.text
    assert r.json()["error"]["details"] == {"content_type": content_type, "reason": reason, "found": found}
    assert "重新" in r.json()["error"]["message"]  # tells the resident to scan or export again
    await nothing_stored(files_dir)


# ---- ordinary files, and the header readers on any input ---------------------------------------

XMP = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
       b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="HUAWEI P40"/></rdf:RDF></x:xmpmeta>'
       b'<?xpacket end="w"?>')


def _noise(seed: int, size: tuple[int, int]) -> Any:
    from PIL import Image

    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


def _saved(image: Any, kind: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def test_ordinary_photos_and_scans_pass_every_check() -> None:
    """Megabytes of camera-like noise (compressed data looks random, where a careless pattern would match by
    chance), with EXIF and XMP as phones write them, and PDFs from a common writer (Pillow, as scanner apps)."""
    from PIL import Image, PngImagePlugin

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "HUAWEI", "ELS-AN00"
    text = PngImagePlugin.PngInfo()
    text.add_text("Software", "Snipaste")
    text.add_itxt("XML:com.adobe.xmp", XMP.decode())
    photo, page = _noise(1, (1600, 1200)), _noise(2, (1240, 1754))
    cases = [
        (_saved(photo, "JPEG", quality=92, exif=exif, xmp=XMP), "image/jpeg", (1600, 1200)),
        (_saved(photo, "JPEG", quality=85, progressive=True), "image/jpeg", (1600, 1200)),
        (_saved(_noise(3, (800, 600)), "PNG", pnginfo=text), "image/png", (800, 600)),
        (_saved(photo, "WEBP", quality=80, exif=exif, xmp=XMP), "image/webp", (1600, 1200)),
        (_saved(_noise(4, (700, 500)), "WEBP", lossless=True), "image/webp", (700, 500)),
        (_saved(page, "PDF", resolution=150), "application/pdf", None),
        (_saved(page, "PDF", save_all=True, append_images=[_noise(5, (1240, 1754))], title="居住证明"),
         "application/pdf", None),
        (pdf_bytes("An ordinary form: <b>bold</b> and a javascript tutorial's title"), "application/pdf", None),
    ]
    for data, content_type, size in cases:
        checked = check_file(data, name="scan", max_bytes=10 * 1024 * 1024, max_pixels=PIXELS)
        assert checked.content_type == content_type
        assert image_size(content_type, data) == size


def test_readers_give_width_then_height() -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "Xiaomi"
    for data in (image_bytes("PNG", size=(3, 5)), jpeg_bytes(size=(3, 5)), webp_bytes(size=(3, 5)),
                 webp_bytes(size=(3, 5), lossless=True), image_bytes("WEBP", size=(3, 5), exif=exif)):
        kind = sniff(data)
        assert kind is not None and image_size(kind, data) == (3, 5), (kind, data[:16])
    assert image_bytes("WEBP", size=(3, 5), exif=exif)[12:16] == b"VP8X"


def test_jpeg_size_comes_from_the_image_not_its_exif_thumbnail() -> None:
    with_thumbnail = jpeg_with(0xE1, b"Exif\x00\x00" + jpeg_bytes(size=(160, 120)), base=jpeg_bytes(size=(3, 5)))
    assert jpeg_size(with_thumbnail) == (3, 5)
    # Fill bytes before a marker, and stray bytes between segments, are skipped as libjpeg skips them.
    real = jpeg_bytes(size=(3, 5))
    assert jpeg_size(real[:2] + b"\xff\xff\xff" + real[2:]) == (3, 5)
    assert jpeg_size(real[:2] + b"\x00junk" + real[2:]) == (3, 5)
    # A scan (SOS) or the end (EOI) before any frame header: not an image.
    assert jpeg_size(b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x12" * 50 + b"\xff\xd9") is None
    assert jpeg_size(NO_FRAME_JPEG) is None


REAL_FILES = [png_bytes(), image_bytes("PNG", size=(3, 5)), jpeg_bytes(size=(3, 5)), jpeg_with(0xFE, b"x" * 40),
              webp_bytes(size=(3, 5)), webp_bytes(size=(3, 5), lossless=True), webp_claiming("VP8X", 3, 5),
              pdf_bytes()]


def test_readers_on_every_truncation_give_the_size_or_nothing() -> None:
    for data in REAL_FILES:
        kind = sniff(data)
        assert kind is not None
        full = image_size(kind, data)
        for cut in range(len(data.rstrip(b"\n"))):  # a PDF without its last line end is still whole
            for reader in (png_size, jpeg_size, webp_size):
                got = reader(data[:cut])
                assert got is None or (reader is {"image/png": png_size, "image/jpeg": jpeg_size}.get(
                    kind, webp_size) and got == full)
            with pytest.raises(DomainError) as exc:
                check_file(data[:cut], name="cut", max_bytes=MAX, max_pixels=PIXELS)
            assert exc.value.code in ("upload.empty", "upload.type_not_allowed", "upload.truncated",
                                      "upload.damaged"), (kind, cut, exc.value.code)


MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", b"\xff\xd8", b"\xff\xd8\xff",
         b"\xff\xd8\xff\xc0", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"RIFF\xff\xff\xff\xffWEBPVP8L",
         b"RIFF\x20\x00\x00\x00WEBPVP8X", b"%PDF-1.7\n"]
REFUSALS = {"upload.empty", "upload.too_large", "upload.type_not_allowed", "upload.truncated", "upload.damaged",
            "upload.mixed_content"}


def _answer_or_refusal(data: bytes) -> None:
    for reader in (png_size, jpeg_size, webp_size):
        got = reader(data)
        assert got is None or (isinstance(got, tuple) and all(0 <= n < 2**32 for n in got))
    for kind in ("image/png", "image/jpeg", "image/webp", "application/pdf"):
        foreign = foreign_content(kind, data)
        assert foreign is None or foreign.found
    try:
        checked = check_file(data, name="x", max_bytes=MAX, max_pixels=PIXELS)
    except DomainError as exc:
        assert exc.code in REFUSALS, exc.code
    else:
        assert checked.size == len(data)


@settings(max_examples=400, deadline=None)
@given(magic=st.sampled_from(MAGIC), rest=st.binary(max_size=300), end=st.sampled_from(
    [b"", b"\xff\xd9", b"\x00\x00\x00\x00IEND\xaeB`\x82", b"\n%%EOF\n"]))
def test_readers_and_checks_on_random_bytes_answer_or_refuse(magic: bytes, rest: bytes, end: bytes) -> None:
    _answer_or_refusal(magic + rest + end)


@settings(max_examples=400, deadline=None)
@given(base=st.sampled_from(REAL_FILES), edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                        max_size=8))
def test_readers_and_checks_on_damaged_real_files_answer_or_refuse(base: bytes, edits: list[tuple[int, int]]
                                                                   ) -> None:
    data = bytearray(base)
    for at, value in edits:
        data[at % len(data)] = value
    _answer_or_refusal(bytes(data))


@pytest.mark.parametrize(("data", "kind", "found"), [
    (pdf_bytes(catalog=b"/OpenAction 6 0 R", extra=[b"<< /S /J#61vaScr#69pt /JS (x) >>"]), "application/pdf",
     "/JavaScript"),
    (pdf_bytes(catalog=b"/OpenAction 6 0 R", extra=[b"<< /JS (app.alert\\(1\\)) >>"]), "application/pdf", "/JS"),
    (pdf_bytes(catalog=b"/OpenAction 6 0 R", extra=[b"<< /S /Launch /F (cmd.exe) >>"]), "application/pdf",
     "/Launch"),
    (pdf_bytes(catalog=b"/Names << /EmbeddedFiles << /Names [(a.exe) 6 0 R] >> >>"), "application/pdf",
     "/EmbeddedFile"),
    (pdf_bytes(extra=[b"<< /Type /Annot /Subtype /RichMedia >>"]), "application/pdf", "/RichMedia"),
    (pdf_bytes(catalog=b"/AcroForm << /Fields [] /XFA 6 0 R >>"), "application/pdf", "/XFA"),
    (pdf_bytes(extra=[b"<< /S /URI /URI (javascript:alert\\(1\\)) >>"]), "application/pdf", "javascript:"),
    (png_with(png_chunk(b"zIPx", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 20)), "image/png", "ZIP"),
    (png_with(png_chunk(b"iTXt", b"XML\x00\x00\x00\x00\x00<?xml version='1.0'?><svg/>")), "image/png", "<?xml"),
    (jpeg_with(0xFE, b"<IFRAME\tsrc=//evil>"), "image/jpeg", "<iframe"),
])
def test_what_makes_a_file_two_types(data: bytes, kind: str, found: str) -> None:
    foreign = foreign_content(kind, data)
    assert foreign is not None and foreign.found == found


def test_zip_appended_to_an_image_is_found() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.html", "<p>hi</p>")
    # The archive's comment ends in the JPEG end marker, so the file still "ends like a JPEG".
    data = jpeg_bytes() + archive.getvalue()[:-2] + b"\x02\x00\xff\xd9"
    with pytest.raises(DomainError) as exc:
        check_file(data, name="x.jpg", max_bytes=MAX, max_pixels=PIXELS)
    assert (exc.value.code, exc.value.details["found"]) == ("upload.mixed_content", "ZIP")


def test_short_pdf_keys_inside_stream_data_are_not_active_content() -> None:
    # Compressed page content can hold the bytes "/JS " or "/XFA " by chance; they are not keys there.
    content = b"q 1 0 0 1 0 0 cm /JS Do /XFA gs Q"
    data = pdf_bytes(extra=[b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"])
    assert foreign_content("application/pdf", data) is None
    assert check_file(data, name="ok.pdf", max_bytes=MAX, max_pixels=PIXELS).content_type == "application/pdf"


# ---- the S3-compatible store ----------------------------------------------------------------


def test_sigv4_matches_the_aws_documented_example() -> None:
    """AWS's own example (S3 API reference, "GET Object" signature calculation)."""
    store = S3FileStore(S3Config(endpoint="https://examplebucket.s3.amazonaws.com", bucket="examplebucket",
                                 region="us-east-1", access_key="AKIAIOSFODNN7EXAMPLE",
                                 secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"))
    headers = store.signed_headers("GET", "/test.txt", b"", now=dt.datetime(2013, 5, 24, tzinfo=dt.UTC),
                                   extra={"Range": "bytes=0-9"})
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


async def test_s3_store_puts_gets_and_checks_against_a_fake_s3_on_loopback() -> None:
    Sanic.test_mode = True
    app = Sanic(f"fake_s3_{uuid.uuid4().hex[:8]}")
    objects: dict[str, bytes] = {}
    seen: list[str] = []

    @app.route("/<bucket:str>/<prefix:str>/<key:str>", methods=["PUT", "GET", "HEAD"])
    async def obj(request: Request, bucket: str, prefix: str, key: str) -> HTTPResponse:
        auth = request.headers.get("authorization", "")
        seen.append(request.method)
        if not auth.startswith("AWS4-HMAC-SHA256 Credential=AK/") or "Signature=" not in auth:
            return empty(status=403)
        if request.headers.get("x-amz-content-sha256") != hashlib.sha256(request.body or b"").hexdigest():
            return empty(status=400)
        path = f"{bucket}/{prefix}/{key}"
        if request.method == "PUT":
            objects[path] = request.body
            return empty(status=200)
        if path not in objects:
            return empty(status=404)
        return raw(objects[path] if request.method == "GET" else b"")

    server, url = await start_app(app)
    try:
        store = S3FileStore(S3Config(endpoint=url, bucket="materials", region="cn-hangzhou", access_key="AK",
                                     secret_key="SK"))
        data = png_bytes(7)
        digest = hashlib.sha256(data).hexdigest()
        assert await store.exists(digest) is False
        await store.put(digest, data, "image/png")
        assert objects == {f"materials/{digest[:2]}/{digest}": data}
        assert await store.exists(digest) is True
        assert await store.get(digest) == data
        with pytest.raises(DomainError) as exc:
            await store.get("0" * 64)
        assert exc.value.code == "upload.not_found"
        assert seen == ["HEAD", "PUT", "HEAD", "GET", "GET"]
        await store.aclose()
    finally:
        await stop_app(server)
        Sanic._app_registry.pop(app.name, None)


def test_settings_choose_the_store(tmp_path: Path) -> None:
    from backend.settings import Settings

    local = files.store_for(Settings(files_dir=str(tmp_path)))
    assert isinstance(local, files.LocalFileStore) and local.root == tmp_path
    s3 = files.store_for(Settings(file_store="s3", s3_endpoint="http://127.0.0.1:9", s3_access_key="a",
                                  s3_secret_key="b"))
    assert isinstance(s3, S3FileStore) and s3.config.bucket == "palmhall-files"
