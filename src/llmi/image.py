"""Images as immutable values passed between tools, the engine and renderers."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = ["ImageData"]


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
    def from_bytes(cls, data: bytes) -> "ImageData":
        """Decode ``data`` to learn its format and size; raises ``ValueError`` if it is no image."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = (im.format or "png").lower()
                width, height = im.size
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
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
        from PIL import Image

        im = Image.open(io.BytesIO(self.data))
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
