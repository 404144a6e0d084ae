"""Images on a canary's user turn (`images: [path, ...]`, relative to the canary file),
checked at load: the file exists, its magic bytes say PNG, JPEG, GIF or WebP, and it is under
the size cap. Read once here; the providers send the bytes, the cache key covers their hash."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

MAX_IMAGE_BYTES = 5 * 1024 * 1024  # Anthropic's per-image limit; OpenAI allows more


@dataclass(frozen=True)
class ImageRef:
    """One image as the providers send it."""

    name: str  # the path as the canary gives it
    media_type: str
    sha256: str
    data: str  # base64
    size: int

    def message_part(self) -> dict[str, str]:
        """The neutral form on a planned user turn (evalgate.engine.providers.parts)."""
        return {"name": self.name, "media_type": self.media_type, "sha256": self.sha256,
                "data": self.data,
                "data_uri": f"data:{self.media_type};base64,{self.data}"}


def sniff(head: bytes) -> str | None:
    """The media type by magic bytes (PNG, JPEG, GIF, WebP), else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def load_image(base: Path, name: str) -> ImageRef:
    """The image at `base / name`; ValueError saying what is wrong with it."""
    path = base / name
    if not path.is_file():
        raise ValueError(f"image {name!r} does not exist ({path})")
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ValueError(f"image {name!r} is {size} bytes, over the {MAX_IMAGE_BYTES} byte cap")
    data = path.read_bytes()
    media_type = sniff(data[:16])
    if media_type is None:
        raise ValueError(f"image {name!r} is not a PNG, JPEG, GIF or WebP image (by its first "
                         "bytes)")
    return ImageRef(name, media_type, hashlib.sha256(data).hexdigest(),
                    base64.b64encode(data).decode("ascii"), size)
