"""Material uploads through the HTTP API: every refusal, content-addressed storage, and the S3 store."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Request, Sanic
from sanic.response import HTTPResponse, empty, raw

from backend.audit.models import AuditEntry
from backend.cases import files
from backend.cases.files import S3Config, S3FileStore, check_file
from backend.cases.models import Upload
from backend.errors import DomainError
from tests.cases_support import jpeg_bytes, pdf_bytes, png_bytes, resident, upload
from tests.conftest import Live, Platforms, start_app, stop_app

MAX = 4096


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


async def test_pdf_jpeg_and_png_are_stored_under_their_hash(live: Live, platforms: Platforms, files_dir: Path
                                                             ) -> None:
    me = await resident(live, platforms)
    for data, name, kind in ((pdf_bytes(), "申请表.pdf", "application/pdf"), (jpeg_bytes(), "身份证.jpg", "image/jpeg"),
                             (png_bytes(), "照片.png", "image/png")):
        r = await upload(live, me, data, name, "application/octet-stream")
        assert r.status_code == 201, r.text
        digest = hashlib.sha256(data).hexdigest()
        assert r.json()["content_type"] == kind and r.json()["sha256"] == digest and r.json()["name"] == name
        stored = files_dir / digest[:2] / digest
        assert stored.read_bytes() == data
    # Nothing in the store carries a name a client chose.
    assert sorted(p.name for p in files_dir.rglob("*") if p.is_file()) == sorted(
        hashlib.sha256(d).hexdigest() for d in (pdf_bytes(), jpeg_bytes(), png_bytes()))
    assert await Upload.all().count() == 3
    assert await AuditEntry.filter(action="upload.stored").count() == 3


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
    assert check_file(pdf_bytes() + b"\r\n", name="a.pdf", max_bytes=MAX).content_type == "application/pdf"
    assert check_file(jpeg_bytes(), name=None, max_bytes=MAX).display_name == "未命名文件"
    with pytest.raises(DomainError) as exc:
        check_file(b"%PDF-1.7\n" + b"0" * 100, name="a.pdf", max_bytes=MAX)
    assert exc.value.code == "upload.truncated"


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
