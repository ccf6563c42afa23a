"""Images as immutable values passed between tools, the engine and renderers."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = ["MAX_PIXELS", "ImageData"]

#: the most pixels llmi decodes in one image: larger ones are refused from their header alone,
#: so no tool or renderer ever holds a decompression bomb's pixels in memory
MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class ImageData:
    """Encoded image bytes with their pixel size.

    >>> img = ImageData.blank(4, 3)
    >>> (img.width, img.height, img.format)
    (4, 3, 'png')
    """

    data: bytes = field(repr=False)
    width: int
    height: int
    format: str = "png"  # "png" | "jpeg" | "webp" | "gif" ...

    @property
    def mime(self) -> str:
        return f"image/{self.format}"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, max_pixels: int = MAX_PIXELS) -> "ImageData":
        """Read ``data``'s format and size; ``ValueError`` if it is no image or over ``max_pixels``."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = (im.format or "png").lower()
                width, height = _within(im.size, max_pixels)
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ValueError(f"not a readable image: {exc}") from exc
        return cls(data=data, width=width, height=height, format="jpeg" if fmt == "jpg" else fmt)

    @classmethod
    def from_pil(cls, image: "PILImage.Image", format: str = "png") -> "ImageData":
        buf = io.BytesIO()
        if format == "jpeg" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(buf, format=format.upper())
        return cls(data=buf.getvalue(), width=image.width, height=image.height, format=format)

    @classmethod
    def from_path(cls, path: str) -> "ImageData":
        with open(path, "rb") as fh:
            return cls.from_bytes(fh.read())

    @classmethod
    def blank(cls, width: int, height: int, color: str = "white") -> "ImageData":
        from PIL import Image

        return cls.from_pil(Image.new("RGB", (width, height), color))

    def to_pil(self) -> "PILImage.Image":
        """The decoded picture; ``ValueError`` (before decoding) if its header is over ``MAX_PIXELS``."""
        from PIL import Image

        im = Image.open(io.BytesIO(self.data))
        _within(im.size, MAX_PIXELS)
        im.load()
        return im

    def to_png(self) -> "ImageData":
        """The same picture as PNG (RGB or RGBA kept)."""
        if self.format == "png":
            return self
        return ImageData.from_pil(self.to_pil(), "png")

    @property
    def extension(self) -> str:
        return {"jpeg": "jpg"}.get(self.format, self.format)


def _within(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    if size[0] * size[1] > max_pixels:
        raise ValueError(f"image of {size[0]}x{size[1]} pixels is over the {max_pixels:,}-pixel limit")
    return size
