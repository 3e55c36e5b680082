"""What a material file's bytes say it is: its type, whether it is whole, an image's size, and foreign content.

Everything here reads headers and scans bytes; nothing decodes pixels or runs a parser whose work grows with
what the file claims. Each function does bounded work on any input and answers None (or a finding) rather
than raising, so `files.check_file` alone decides which refusal a person sees.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

PDF, JPEG, PNG, WEBP = "application/pdf", "image/jpeg", "image/png", "image/webp"
ALLOWED = (PDF, JPEG, PNG, WEBP)
IMAGES = (JPEG, PNG, WEBP)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The last 12 bytes of every complete PNG: length 0, "IEND", and that chunk's fixed CRC.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def sniff(data: bytes) -> str | None:
    """The content type the bytes themselves declare (magic numbers), or None."""
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(PNG_SIGNATURE):
        return PNG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


def is_complete(content_type: str, data: bytes) -> bool:
    """A file cut short in transfer lacks its end marker (WebP: fewer bytes than its RIFF header counts)."""
    if content_type == PDF:
        # Writers may put a line end (or NUL padding) after the marker.
        return data.rstrip(b"\r\n \t\x00").endswith(b"%%EOF")
    if content_type == JPEG:
        return data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if content_type == PNG:
        return data.endswith(_PNG_IEND)
    if content_type == WEBP:
        if len(data) < 12:
            return False
        end = 8 + struct.unpack_from("<I", data, 4)[0]
        return len(data) >= end and not data[end:].strip(b"\x00")
    return False


# ---- image size from the header ---------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from IHDR, which must be the first chunk, 13 bytes long, with a good CRC."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        return None
    if zlib.crc32(data[12:29]) != struct.unpack_from(">I", data, 29)[0]:
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


# Start-of-frame markers carry the size: SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and RST0-RST7.
_JPEG_BARE = frozenset({0x01, *range(0xD0, 0xD8)})
# Real files reach their frame header after a few dozen segments (APPn, ICC chunks, DQT); a file that
# does not within this many is refused rather than walked further.
_JPEG_MAX_SEGMENTS = 1024
_JPEG_FILL = re.compile(rb"\xff+")


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOFn, walking segment lengths (so an EXIF thumbnail's frame header,
    inside APP1, is never mistaken for the image's). No SOFn before SOS or EOI: not an image, None."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, size = 2, len(data)
    for _ in range(_JPEG_MAX_SEGMENTS):
        # Like libjpeg (so the size read is the one a browser's decoder reads): skip stray bytes up to the
        # next 0xFF, then fill bytes; "FF 00" is no marker, so keep looking.
        fill = _JPEG_FILL.search(data, pos)
        if fill is None or fill.end() >= size:
            return None
        marker, pos = data[fill.end()], fill.end() + 1
        if marker == 0x00 or marker in _JPEG_BARE:
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # SOI again, or EOI or SOS before any frame header
            return None
        if pos + 2 > size:
            return None
        length = struct.unpack_from(">H", data, pos)[0]
        if length < 2 or pos + length > size:
            return None
        if marker in _JPEG_SOF:
            if length < 8:
                return None
            height, width = struct.unpack_from(">HH", data, pos + 3)  # after length and sample precision
            return width, height
        pos += length
    return None


def webp_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first chunk: VP8 (lossy key frame), VP8L (lossless) or VP8X (the canvas)."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind, length = data[12:16], struct.unpack_from("<I", data, 16)[0]
    if kind == b"VP8 ":
        # Frame tag (3 bytes, bit 0 clear on a key frame), start code 9d 01 2a, 14-bit width and height.
        if length < 10 or data[20] & 1 or data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":
        # Signature 0x2f, then width-1 and height-1 in 14 bits each and a 3-bit version that must be 0.
        bits = struct.unpack_from("<I", data, 21)[0]
        if length < 5 or data[20] != 0x2F or bits >> 29:
            return None
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        # Flags and 3 reserved bytes, then canvas width-1 and height-1 in 24 bits each.
        if length < 10:
            return None
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


_SIZE_READERS = {PNG: png_size, JPEG: jpeg_size, WEBP: webp_size}


def image_size(content_type: str, data: bytes) -> tuple[int, int] | None:
    reader = _SIZE_READERS.get(content_type)
    return reader(data) if reader else None


# ---- foreign content (a file that is more than one type) --------------------------------------
#
# Patterns are chosen so that compressed data (random-looking bytes: most of any photo or scan) does not
# match by chance. A tag name must be followed by what ends one, so even the shortest, "<svg", matches random
# bytes about once in 20 GB (5e-11 per byte, any case); a ZIP header must carry a plausible "version needed".
# Speed: markup and names are searched in a lower-cased copy, each pattern starting with one literal byte
# ("<", "/") or string, which the regex engine skips to at memchr speed: about 7 ms per MB for every check
# together; a file made of nothing but "<" costs some 80 ms per MB, still linear.

_TAGS = rb"html|head|body|script|iframe|frame|frameset|object|embed|svg|meta|base|link|style|form"
_HTML = re.compile(rb"<(?:(?:%s)[\t\n\f\r />]|!doctype)" % _TAGS)
# An XML declaration cannot start an image, so one inside an image is another document. Embedded XMP carries
# no declaration (XMP spec: the packet wrapper replaces it), so photos with metadata do not match.
_HTML_OR_XML = re.compile(rb"<(?:(?:%s)[\t\n\f\r />]|!doctype|\?xml[\t\n\r ])" % _TAGS)
_SCRIPT_URLS = (b"javascript:", b"vbscript:")
# A ZIP local file header (DOCX, JAR and APK are ZIPs too).
_ZIP = re.compile(rb"PK\x03\x04[\x00-\x3f]\x00")


def _pdf_name(name: str, *, whole: bool) -> bytes:
    """A PDF name as a pattern over lower-cased bytes, each character also written as a #xx escape."""
    chars = [rb"(?:%s|#%s)" % (re.escape(ch.lower().encode()), f"{ord(ch):02x}".encode()) for ch in name]
    end = rb"(?=[\x00\t\n\f\r ()<>\[\]{}/%]|\Z)" if whole else b""
    return b"/(?:" + b"".join(chars) + b")" + end


# Keys that make a viewer run or open something. The long ones count anywhere in the raw bytes (they never
# occur by chance). Every JavaScript action names its type /JavaScript, so /JS alone adds no reach; /JS and
# /XFA are short, so they count only outside stream data, where compressed bytes would match them now and then.
_ACTIVE_LONG = re.compile(b"/(?:" + b"|".join(
    _pdf_name(n, whole=False)[1:] for n in ("JavaScript", "Launch", "EmbeddedFile", "RichMedia")) + b")")
_ACTIVE_SHORT = re.compile(b"/(?:" + b"|".join(_pdf_name(n, whole=True)[1:] for n in ("JS", "XFA")) + b")")
_ACTIVE_ANY = re.compile(b"/(?:" + _ACTIVE_LONG.pattern[1:] + b"|" + _ACTIVE_SHORT.pattern[1:] + b")")
# Object streams (PDF 1.5 and later) keep dictionaries compressed, where a raw scan would not see an action.
_OBJSTM = re.compile(_pdf_name("Type", whole=True) + rb"[\x00\t\n\f\r ]*" + _pdf_name("ObjStm", whole=True))
_STREAM_START = re.compile(rb"stream(?:\r\n|\n|\r)")
_OBJSTM_DICT_REACH = 64 * 1024
_MAX_OBJECT_STREAMS = 2048
_MAX_INFLATED = 16 * 1024 * 1024
_MAX_SHORT_HITS_IN_STREAMS = 256
_PDF_ESCAPE = re.compile(rb"#([0-9a-fA-F]{2})")


@dataclass(frozen=True)
class Foreign:
    """Why a file is more than one type: `reason` is markup, embedded_format or active_content; `found` a
    short token such as "<script", "javascript:", "PDF", "ZIP" or "/JavaScript"."""

    reason: str
    found: str


def _markup(lowered: bytes, tags: re.Pattern[bytes]) -> Foreign | None:
    found = tags.search(lowered)
    if found:
        return Foreign("markup", found.group(0).rstrip(b"\t\n\f\r />").decode("ascii"))
    for url in _SCRIPT_URLS:
        if url in lowered:
            return Foreign("markup", url.decode("ascii"))
    return None


def _name(found: re.Match[bytes], original: bytes) -> Foreign:
    """The name as the file spells it (the search ran over a lower-cased copy), with #xx escapes decoded."""
    name = _PDF_ESCAPE.sub(lambda h: bytes([int(h.group(1), 16)]), original[found.start():found.end()])
    return Foreign("active_content", name.decode("latin-1"))


def _short_name_outside_streams(data: bytes, lowered: bytes) -> Foreign | None:
    """A /JS or /XFA key where the last "stream"/"endstream" keyword before it (if any) ended a stream. The
    keyword is looked for only between one hit and the next, so the whole walk reads each byte once."""
    in_stream, since, hits = False, 0, 0
    for found in _ACTIVE_SHORT.finditer(lowered):
        keyword = lowered.rfind(b"stream", since, found.start())
        if keyword >= 0:
            in_stream = lowered[max(keyword - 3, 0):keyword] != b"end"
        if not in_stream:
            return _name(found, data)
        hits += 1
        if hits > _MAX_SHORT_HITS_IN_STREAMS:
            return None
        since = found.start()
    return None


def _inflate(data: bytes, start: int, budget: int) -> bytes:
    """At most `budget` bytes of the zlib stream at `start` (nothing if there is none), read 64 KiB at a time
    so that the rest of the file is never copied."""
    inflater, view, out = zlib.decompressobj(), memoryview(data), bytearray()
    pos = start
    try:
        while pos < len(data) and len(out) < budget and not inflater.eof:
            out += inflater.decompress(view[pos:pos + 65536], budget - len(out))
            if inflater.unconsumed_tail:
                break  # the budget is spent
            pos += 65536
    except zlib.error:
        pass  # not Flate (or damaged): nothing more to see in it
    return bytes(out)


def _active_in_object_streams(data: bytes, lowered: bytes) -> Foreign | None:
    budget = _MAX_INFLATED
    for n, found in enumerate(_OBJSTM.finditer(lowered)):
        if n >= _MAX_OBJECT_STREAMS or budget <= 0:
            return None
        start = _STREAM_START.search(lowered, found.end(), found.end() + _OBJSTM_DICT_REACH)
        if start is None:
            continue
        inflated = _inflate(data, start.end(), budget)
        budget -= len(inflated)
        active = _ACTIVE_ANY.search(inflated.lower())
        if active:
            return _name(active, inflated)
    return None


def foreign_content(content_type: str, data: bytes) -> Foreign | None:
    """What in these bytes belongs to another type: markup a browser would run or render, another format's
    signature inside an image, or PDF content a viewer would run or open. None for an ordinary file."""
    lowered = data.lower()
    if content_type in IMAGES:
        if b"%PDF-" in data:
            return Foreign("embedded_format", "PDF")
        if _ZIP.search(data):
            return Foreign("embedded_format", "ZIP")
        return _markup(lowered, _HTML_OR_XML)
    if content_type == PDF:
        # No XML declaration is looked for in a PDF: XML there is metadata (XMP, which should carry none, but a
        # producer that writes one is no reason to refuse a scan) or an XFA form, which its key catches.
        if _ZIP.search(data):
            return Foreign("embedded_format", "ZIP")
        found = _markup(lowered, _HTML)
        if found:
            return found
        active = _ACTIVE_LONG.search(lowered)
        if active:
            return _name(active, data)
        return _short_name_outside_streams(data, lowered) or _active_in_object_streams(data, lowered)
    return None
