"""Material files: what a file really is (by its bytes), and where its bytes are kept (local folder or S3)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from backend.cases.formats import ALLOWED, IMAGES, foreign_content, image_size, is_complete, sniff
from backend.errors import DomainError, register_codes

register_codes({
    "upload.missing_file": (400, "请选择要上传的文件（multipart 表单字段 file，每次一个）"),
    "upload.empty": (422, "上传的文件是空的"),
    "upload.too_large": (413, "文件过大或图片尺寸过大，请压缩后重新上传"),
    "upload.type_not_allowed": (415, "只能上传 PDF、JPEG、PNG 或 WebP 文件"),
    "upload.truncated": (422, "文件不完整（可能上传中断或已损坏），请重新上传"),
    "upload.damaged": (422, "无法读取图片的尺寸（文件已损坏或不是有效的图片），请重新拍照或导出后上传"),
    "upload.mixed_content": (422, "文件中夹带了网页代码、脚本或其他格式的内容，请重新扫描或用相机重新拍照，"
                                  "或另存为普通的 PDF/图片后再上传"),
    "upload.bad_name": (422, "文件名不合规：不能含路径分隔符或控制字符，且不超过100个字"),
    "upload.daily_limit": (429, "今日上传次数已达上限，请明天再试"),
    "upload.not_found": (404, "未找到该文件"),
    "files.unavailable": (503, "文件存储暂不可用，请稍后重试"),
})

MAX_NAME_CHARS = 100


def check_name(name: str | None) -> str:
    """A display name safe to show and store (never used as a path): refuses rather than rewrites."""
    if name is None or not name.strip():
        return "未命名文件"
    if len(name) > MAX_NAME_CHARS or len(name.encode("utf-8", "surrogatepass")) > 255:
        raise DomainError("upload.bad_name", details={"reason": "too_long", "max_chars": MAX_NAME_CHARS})
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith(".."):
        raise DomainError("upload.bad_name", details={"reason": "path_separator"})
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        # NUL, other control characters, bidi overrides (a "gpj.exe" shown as "exe.jpg"), unassigned.
        raise DomainError("upload.bad_name", details={"reason": "control_character"})
    return unicodedata.normalize("NFC", name.strip())


@dataclass(frozen=True)
class Checked:
    content_type: str
    sha256: str
    size: int
    display_name: str


def check_file(data: bytes, *, name: str | None, max_bytes: int, max_pixels: int) -> Checked:
    """Every refusal of an upload, decided from the bytes (never the name or the declared type): nothing a
    clerk's browser would choke on (an image too many pixels to decode) or run (a file that is also a page)."""
    display = check_name(name)
    if not data:
        raise DomainError("upload.empty")
    if len(data) > max_bytes:
        raise DomainError("upload.too_large", details={"reason": "bytes", "max_bytes": max_bytes, "size": len(data)})
    kind = sniff(data)
    if kind is None:
        raise DomainError("upload.type_not_allowed", details={"allowed": list(ALLOWED)})
    if not is_complete(kind, data):
        raise DomainError("upload.truncated", details={"content_type": kind})
    if kind in IMAGES:
        size = image_size(kind, data)
        if size is None or 0 in size:
            raise DomainError("upload.damaged", details={"content_type": kind,
                                                         "reason": "no_size" if size is None else "zero_size"})
        width, height = size
        if width * height > max_pixels:
            raise DomainError("upload.too_large", details={"reason": "pixels", "max_pixels": max_pixels,
                                                           "width": width, "height": height})
    foreign = foreign_content(kind, data)
    if foreign is not None:
        raise DomainError("upload.mixed_content", details={"content_type": kind, "reason": foreign.reason,
                                                           "found": foreign.found})
    return Checked(content_type=kind, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                   display_name=display)


_KEY = re.compile(r"^[0-9a-f]{64}$")


def object_key(sha256: str) -> str:
    """Where content lives: its hash, fanned out over 256 folders."""
    if not _KEY.match(sha256):
        raise ValueError("object keys are SHA-256 hex digests")
    return f"{sha256[:2]}/{sha256}"


class FileStore(Protocol):
    """Content-addressed storage: the key is always the SHA-256 of the bytes."""

    async def put(self, sha256: str, data: bytes, content_type: str) -> None: ...

    async def get(self, sha256: str) -> bytes: ...

    async def exists(self, sha256: str) -> bool: ...


class LocalFileStore:
    """A folder on this host (the embedded default): fine for one host, not for many."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, sha256: str) -> Path:
        return self.root / object_key(sha256)

    async def put(self, sha256: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, sha256, data)

    def _put(self, sha256: str, data: bytes) -> None:
        path = self._path(sha256)
        if path.exists():
            return  # same hash, same bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file under a content hash.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        tmp.write_bytes(data)
        tmp.replace(path)

    async def get(self, sha256: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(sha256).read_bytes)
        except FileNotFoundError:
            raise DomainError("upload.not_found") from None

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self._path(sha256).exists)


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class S3Config:
    endpoint: str  # e.g. https://oss-cn-hangzhou.aliyuncs.com or http://127.0.0.1:9000 (MinIO)
    bucket: str
    region: str
    access_key: str
    secret_key: str


class S3FileStore:
    """Any S3-compatible store (MinIO, Alibaba OSS, Tencent COS, Huawei OBS) through path-style
    requests signed with AWS Signature Version 4."""

    def __init__(self, config: S3Config, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.client = client or httpx.AsyncClient(timeout=30)

    def _url_path(self, sha256: str) -> str:
        base = urlsplit(self.config.endpoint).path.rstrip("/")
        return f"{base}/{quote(self.config.bucket)}/{quote(object_key(sha256))}"

    def signed_headers(self, method: str, path: str, body: bytes, *, now: dt.datetime | None = None,
                       content_type: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        """SigV4 headers for a request without a query string (all this store sends)."""
        moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        amz_date, day = moment.strftime("%Y%m%dT%H%M%SZ"), moment.strftime("%Y%m%d")
        host = urlsplit(self.config.endpoint).netloc
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        if content_type:
            headers["content-type"] = content_type
        headers.update({k.lower(): v for k, v in (extra or {}).items()})
        names = sorted(headers)
        canonical = "\n".join([
            method, path, "", *(f"{n}:{headers[n].strip()}" for n in names), "", ";".join(names), payload_hash,
        ])
        scope = f"{day}/{self.config.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = _sign(_sign(_sign(_sign(f"AWS4{self.config.secret_key}".encode(), day), self.config.region), "s3"),
                    "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.config.access_key}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        del headers["host"]  # httpx sends it from the URL
        return headers

    async def _send(self, method: str, sha256: str, body: bytes = b"", content_type: str | None = None
                    ) -> httpx.Response:
        path = self._url_path(sha256)
        headers = self.signed_headers(method, path, body, content_type=content_type)
        url = self.config.endpoint.rstrip("/").removesuffix(urlsplit(self.config.endpoint).path.rstrip("/")) + path
        try:
            return await self.client.request(method, url, content=body or None, headers=headers)
        except httpx.HTTPError:
            raise DomainError("files.unavailable") from None

    async def put(self, sha256: str, data: bytes, content_type: str) -> None:
        r = await self._send("PUT", sha256, data, content_type)
        if r.status_code not in (200, 201, 204):
            raise DomainError("files.unavailable", details={"status": r.status_code})

    async def get(self, sha256: str) -> bytes:
        r = await self._send("GET", sha256)
        if r.status_code == 404:
            raise DomainError("upload.not_found")
        if r.status_code != 200:
            raise DomainError("files.unavailable", details={"status": r.status_code})
        return r.content

    async def exists(self, sha256: str) -> bool:
        r = await self._send("HEAD", sha256)
        if r.status_code in (200, 404):
            return r.status_code == 200
        raise DomainError("files.unavailable", details={"status": r.status_code})

    async def aclose(self) -> None:
        await self.client.aclose()


_stores: dict[tuple[Any, ...], FileStore] = {}


def store_for(settings: Any) -> FileStore:
    """The file store the settings choose, one per process and configuration."""
    if settings.file_store == "s3":
        key = ("s3", settings.s3_endpoint, settings.s3_bucket, settings.s3_region, settings.s3_access_key)
        if key not in _stores:
            _stores[key] = S3FileStore(S3Config(endpoint=settings.s3_endpoint, bucket=settings.s3_bucket,
                                                region=settings.s3_region, access_key=settings.s3_access_key,
                                                secret_key=settings.s3_secret_key))
        return _stores[key]
    local = ("local", settings.files_dir)
    if local not in _stores:
        _stores[local] = LocalFileStore(settings.files_dir)
    return _stores[local]
