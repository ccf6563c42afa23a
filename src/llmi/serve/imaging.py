"""Decoding uploads at the server's edge: base64 in, a flattened RGB picture out, defensively.

(The client flattens before upload with :meth:`llmi.image.ImageData.flattened`; both sides
use :func:`llmi.image.flatten_to_rgb`.)
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import TYPE_CHECKING

from ..image import flatten_to_rgb

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = ["ImageTooLarge", "InvalidImage", "decode_b64_image", "flatten_to_rgb"]


class InvalidImage(ValueError):
    """The upload is not valid base64 or not a readable image."""


class ImageTooLarge(ValueError):
    """The upload decodes to more pixels or bytes than the server accepts."""


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
