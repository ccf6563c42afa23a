"""Image conversions at the server's edges: base64 in, flattened RGB, PNG out.

Both sides use these: the client flattens before upload (an RGBA chart with a transparent
background would otherwise reach the model as black), the server decodes defensively.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = ["ImageTooLarge", "InvalidImage", "decode_b64_image", "flatten_to_rgb", "to_upload_png"]


class InvalidImage(ValueError):
    """The upload is not valid base64 or not a readable image."""


class ImageTooLarge(ValueError):
    """The upload decodes to more pixels or bytes than the server accepts."""


def flatten_to_rgb(image: PILImage.Image, background: tuple[int, int, int] = (255, 255, 255)):
    """``image`` as RGB, transparent parts composited onto ``background`` (white).

    >>> from PIL import Image
    >>> flatten_to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).getpixel((0, 0))
    (255, 255, 255)
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
        # 16/32-bit greyscale: scale to 8 bits instead of clipping to white.
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        hi = arr.max() or 1.0
        image = Image.fromarray((arr * (255.0 / hi)).astype("uint8"), "L")
    return image.convert("RGB")


def decode_b64_image(text: str, *, max_pixels: int, max_bytes: int) -> PILImage.Image:
    """Decode a base64 (or ``data:`` URL) image to a flattened RGB PIL image.

    Raises :class:`InvalidImage` or :class:`ImageTooLarge`; never decodes more than
    ``max_pixels`` pixels (the header is checked before the pixels are read).
    """
    from PIL import Image, UnidentifiedImageError

    if text.startswith("data:"):
        _, _, text = text.partition(",")
    if len(text) > max_bytes * 4 // 3 + 4:
        raise ImageTooLarge(f"image is larger than {max_bytes} bytes")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"image_b64 is not valid base64: {exc}") from None
    if not raw:
        raise InvalidImage("image_b64 decodes to nothing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"image is {width}×{height} = {width * height} pixels; "
                    f"the server accepts at most {max_pixels}"
                )
            if width < 1 or height < 1:
                raise InvalidImage("image has no pixels")
            image.load()
    except ImageTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"image_b64 is not a readable image: {exc}") from None
    return flatten_to_rgb(image)


def to_upload_png(data: bytes) -> bytes:
    """Encoded image bytes → an RGB PNG, ready for ``/edit/``.

    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGBA", (3, 2), (0, 0, 0, 0)).save(buf, "PNG")
    >>> Image.open(io.BytesIO(to_upload_png(buf.getvalue()))).mode
    'RGB'
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        flat = flatten_to_rgb(im)
        buf = io.BytesIO()
        flat.save(buf, format="PNG")
    return buf.getvalue()
