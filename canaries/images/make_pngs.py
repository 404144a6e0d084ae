"""Writes the example image canaries' PNGs (solid fabric swatches) with zlib alone, so the
repository ships images it made itself: `python canaries/images/make_pngs.py`."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SWATCHES = {"red.png": (200, 30, 30), "blue.png": (30, 60, 200), "green.png": (30, 160, 60)}


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour 8-bit RGB PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\x00" + bytes(rgb) * width) * height
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    here = Path(__file__).parent
    for name, rgb in SWATCHES.items():
        (here / name).write_bytes(png(16, 16, rgb))
