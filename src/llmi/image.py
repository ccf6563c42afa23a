"""Images as immutable values passed between tools, the engine and renderers, and the one
way llmi flattens a picture with transparency onto white."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = ["MAX_PIXELS", "ImageData", "flatten_to_rgb"]

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
        """Read ``data``'s format and size; ``ValueError`` if it is no image or is over
        ``max_pixels`` (judged from its header, before anything is decoded)."""
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
        """The decoded picture; ``ValueError``, before decoding, if it is over ``MAX_PIXELS``."""
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

    def flattened(self) -> "ImageData":
        """The same picture as an RGB PNG, transparency composited onto white.

        What an upload to an image model needs: an RGBA chart with a transparent background
        would otherwise reach the model as black (or, in an edits API, as a mask).

        >>> from PIL import Image
        >>> flat = ImageData.from_pil(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).flattened()
        >>> (flat.format, flat.to_pil().mode, flat.to_pil().getpixel((0, 0)))
        ('png', 'RGB', (255, 255, 255))
        """
        with self.to_pil() as im:
            if im.mode == "RGB" and self.format == "png":
                return self
            return ImageData.from_pil(flatten_to_rgb(im), "png")

    def to_jpeg(
        self, *, max_pixels: int | None = None, size: tuple[int, int] | None = None, quality: int = 90
    ) -> "ImageData":
        """An RGB JPEG of this picture, resized to ``size`` exactly or shrunk (aspect kept) to at
        most ``max_pixels``: what judges are shown. Transparency is dropped the way PIL's
        ``convert("RGB")`` drops it, which is what LLM-I sends its judges.

        >>> small = ImageData.blank(400, 100).to_jpeg(max_pixels=10_000)
        >>> (small.format, small.width, small.height)
        ('jpeg', 200, 50)
        """
        from PIL import Image

        with self.to_pil() as im:
            rgb = im.convert("RGB")
        if size is not None:
            rgb = rgb.resize(size, Image.Resampling.BICUBIC)
        elif max_pixels is not None and rgb.width * rgb.height > max_pixels:
            scale = (max_pixels / (rgb.width * rgb.height)) ** 0.5
            target = (max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale)))
            rgb = rgb.resize(target, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=quality)
        return ImageData(data=buf.getvalue(), width=rgb.width, height=rgb.height, format="jpeg")

    @property
    def data_url(self) -> str:
        """``data:image/<format>;base64,...``: the inline form chat and image APIs accept.

        >>> ImageData.blank(1, 1).data_url[:22]
        'data:image/png;base64,'
        """
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    @property
    def extension(self) -> str:
        return {"jpeg": "jpg"}.get(self.format, self.format)


def _within(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    if size[0] * size[1] > max_pixels:
        width, height = size
        raise ValueError(f"image of {width}x{height} pixels is over the {max_pixels:,}-pixel limit")
    return size


def flatten_to_rgb(image: "PILImage.Image", background: tuple[int, int, int] = (255, 255, 255)) -> "PILImage.Image":
    """``image`` as RGB, transparent parts composited onto ``background`` (white).

    16- and 32-bit greyscale is scaled to 8 bits rather than clipped to white.

    >>> from PIL import Image
    >>> flatten_to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).getpixel((0, 0))
    (255, 255, 255)
    >>> flatten_to_rgb(Image.new("LA", (1, 1), (0, 128))).getpixel((0, 0))
    (127, 127, 127)
    """
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        hi = arr.max() or 1.0
        image = Image.fromarray((arr * (255.0 / hi)).astype("uint8"), "L")
    return image.convert("RGB")
