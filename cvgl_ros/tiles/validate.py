"""Is a tile blob a whole image of the cache's tile size? A cheap header probe and a full check.

`probe_tile` reads only the container structure, no pixels (microseconds per tile):
- PNG: the 8-byte signature, then the IHDR chunk (length 13, width and height as big-endian
  uint32) right after it, and the data ending with the IEND chunk (zero length, fixed CRC
  AE 42 60 82), trailing NUL padding allowed. A body cut anywhere lacks the IEND trailer.
- JPEG: SOI (FF D8), the marker segments up to the first start-of-frame (SOF0..SOF15 except
  DHT C4, JPG C8, DAC CC) whose payload holds precision, height and width (big-endian
  uint16), and the data ending with EOI (FF D9), trailing NULs allowed.
- WebP (RIFF container): "RIFF", the little-endian RIFF size (the bytes after the first 8,
  so a cut body is shorter than it claims), "WEBP", then the first chunk: VP8X (canvas
  width-1 and height-1 as 24-bit fields), VP8L (signature 0x2F, then 14-bit width-1 and
  height-1) or VP8 (frame tag, start code 9D 01 2A, 14-bit width and height).

`validate_tile` adds a full decode (`codec.decode_tile`), so a blob passes only when it is
the expected format, the expected tile size, structurally whole and decodable. The probe
runs first, so a cut or junk body never reaches libpng (which prints its own error lines).
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from cvgl_ros.tiles.codec import CorruptTileError, decode_tile, sniff_format
from cvgl_ros.tiles.store import TileRefusedError, TileStore

TILE_SIZES_PX = (256, 512)
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, 0xD8, *range(0xD0, 0xD8)}


@dataclass(frozen=True)
class TileHeader:
    """What a tile's container says about it: format 'png' | 'jpg' | 'webp' and pixel size."""

    image_format: str
    width_px: int
    height_px: int


def probe_tile(data: bytes) -> TileHeader:
    """Format and size from the headers, and the end marker present; CorruptTileError if not."""
    if not data:
        raise CorruptTileError("empty tile")
    fmt = sniff_format(data)
    if fmt is None:
        raise CorruptTileError("not a PNG, JPEG or WebP image")
    width, height = {"png": _png_size, "jpg": _jpeg_size, "webp": _webp_size}[fmt](bytes(data))
    if width <= 0 or height <= 0:
        raise CorruptTileError(f"{fmt} header gives a {width}x{height} px image")
    return TileHeader(fmt, width, height)


def check_header(data: bytes, tile_size: int, image_format: str | None = None) -> TileHeader:
    """`probe_tile` plus the expected square size and (when given) format."""
    header = probe_tile(data)
    if image_format is not None and header.image_format != image_format:
        raise CorruptTileError(f"{header.image_format} tile in a {image_format} cache")
    if (header.width_px, header.height_px) != (tile_size, tile_size):
        raise CorruptTileError(f"tile is {header.width_px}x{header.height_px} px, expected {tile_size}x{tile_size}")
    return header


def validate_tile(data: bytes, tile_size: int, image_format: str | None = None) -> TileHeader:
    """The full check before a tile is committed or kept: header, size, format, then a decode."""
    header = check_header(data, tile_size, image_format)
    decode_tile(bytes(data), tile_size)
    return header


def cache_tile_size(store: TileStore, keys: list[tuple[int, int, int]] | None = None,
                    probes: int = 16) -> int | None:
    """The pixel size of a store's tiles: the most common square 256/512 px header among
    `probes` tiles spread evenly over `keys` (default: all its tiles), so one odd tile does
    not decide; None when no probed tile is readable."""
    keys = store.tile_keys() if keys is None else keys
    step = max(1, len(keys) // probes)
    sizes = Counter()
    for key in keys[::step][:probes]:
        try:
            header = probe_tile(store.read_tile(*key) or b"")
        except (CorruptTileError, TileRefusedError):
            continue
        if header.width_px == header.height_px and header.width_px in TILE_SIZES_PX:
            sizes[header.width_px] += 1
    return max(sizes, key=lambda size: (sizes[size], size == 256)) if sizes else None


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise CorruptTileError("PNG without an IHDR chunk after its signature")
    if not data.rstrip(b"\x00").endswith(_PNG_IEND):
        raise CorruptTileError("truncated PNG (no IEND chunk at the end)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise CorruptTileError("truncated JPEG (no end-of-image marker)")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise CorruptTileError(f"JPEG marker expected at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            i += 2
            continue
        if marker in (0xD9, 0xDA):
            break
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if length < 2:
            raise CorruptTileError(f"JPEG segment of length {length} at byte {i}")
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    raise CorruptTileError("JPEG without a start-of-frame header")


def _webp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 30:
        raise CorruptTileError("WebP shorter than its headers")
    (riff_size,) = struct.unpack("<I", data[4:8])
    if riff_size + 8 > len(data):
        raise CorruptTileError(f"truncated WebP ({len(data)} of {riff_size + 8} bytes)")
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise CorruptTileError("WebP VP8L chunk without its signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise CorruptTileError("WebP VP8 chunk without its start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise CorruptTileError(f"WebP with an unknown first chunk {chunk!r}")
