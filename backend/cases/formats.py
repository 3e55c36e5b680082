"""What a material file's bytes say it is: its type, whether it is whole, and an image's size.

Everything here reads headers and scans bytes; nothing decodes pixels or runs a parser whose work grows with
what the file claims. Each function does bounded work on any input and answers None (or a finding) rather
than raising, so `files.check_file` alone decides which refusal a person sees.
"""

from __future__ import annotations

import re
import struct
import zlib

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
