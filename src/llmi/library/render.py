"""Library pictures at a size fit to show: SVGs rendered on white, small rasters scaled up;
cached on disk as PNG."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import MissingDependency, NotFound
from ..image import ImageData

__all__ = ["fit_raster", "render_svg", "svg_size"]

_SVG_TAG = re.compile(rb"<svg\b[^>]*>", re.DOTALL)
_ATTR = re.compile(rb"""\s(width|height|viewBox)\s*=\s*["']([^"']*)["']""")
_NUMBER = re.compile(rb"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?")
_UNITS = {b"": 1.0, b"px": 1.0, b"pt": 4 / 3, b"pc": 16.0, b"mm": 96 / 25.4, b"cm": 96 / 2.54, b"in": 96.0}


def svg_size(head: bytes) -> tuple[float, float] | None:
    """The intrinsic (width, height) of an SVG from its root tag, in CSS pixels, if stated.

    >>> svg_size(b'<svg width="10mm" height="20mm">')
    (37.795275590551185, 75.59055118110237)
    >>> svg_size(b'<svg viewBox="0 0 300 150" width="100%">')
    (300.0, 150.0)
    """
    tag = _SVG_TAG.search(head)
    if tag is None:
        return None
    attrs = {k: v.strip() for k, v in _ATTR.findall(tag.group(0))}

    def length(raw: bytes | None) -> float | None:
        if not raw or raw.endswith(b"%"):
            return None
        num = _NUMBER.match(raw)
        if num is None:
            return None
        scale = _UNITS.get(raw[num.end():].strip().lower())
        return float(num.group(0)) * scale if scale else None

    width, height = length(attrs.get(b"width")), length(attrs.get(b"height"))
    if width and height and width > 0 and height > 0:
        return width, height
    box = [float(n) for n in _NUMBER.findall(attrs.get(b"viewBox", b""))]
    if len(box) == 4 and box[2] > 0 and box[3] > 0:
        return box[2], box[3]
    return None


@functools.cache
def _empty_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (1, 1), (0, 0, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def _local_only(svg: Path):
    """A fetcher for cairosvg that never touches the network: data: URLs and files beside the SVG."""
    from urllib.parse import unquote, urlsplit

    folder = svg.resolve().parent

    def fetch(url: str, resource_type: str) -> bytes:
        parts = urlsplit(url)
        if parts.scheme == "data":
            from urllib.request import urlopen

            with urlopen(url) as fh:
                return fh.read()
        if parts.scheme in ("", "file"):
            target = Path(unquote(parts.path)).resolve()
            if target.is_relative_to(folder):
                return target.read_bytes()
        # refused: an empty pixel in its place, so the rest of the drawing still renders
        return _empty_png()

    return fetch


def _cached(cache_dir: Path | None, material: str, make: Callable[[], ImageData]) -> ImageData:
    """``make()``, stored as a PNG under ``cache_dir`` by the digest of ``material``."""
    cached = None
    if cache_dir is not None:
        digest = hashlib.sha1(material.encode()).hexdigest()
        cached = cache_dir / digest[:2] / f"{digest}.png"
        if cached.is_file():
            try:
                return ImageData.from_path(str(cached))
            except ValueError:
                cached.unlink(missing_ok=True)
    image = make()
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(image.data)
            os.replace(tmp, cached)
        except OSError:  # a read-only library still answers, uncached
            pass
    return image


def render_svg(path: Path, size: int, cache_dir: Path | None, key: str = "") -> ImageData:
    """``path`` rendered so its longer side is ``size`` pixels, on white; PNG bytes cached by key."""

    def make() -> ImageData:
        try:
            import cairosvg.surface
        except ImportError:
            raise MissingDependency("cairosvg", "search") from None
        try:
            with path.open("rb") as fh:
                head = fh.read(8192)
            intrinsic = svg_size(head)
            kwargs: dict[str, float] = {}
            if intrinsic is not None:
                kwargs["scale"] = size / max(intrinsic)
            else:
                kwargs["output_width"] = size
            # PNGSurface.convert passes url_fetcher on to the parser (svg2png does not take it)
            data = cairosvg.surface.PNGSurface.convert(
                url=str(path), background_color="white", unsafe=False, url_fetcher=_local_only(path), **kwargs
            )
            return ImageData.from_bytes(data)
        except Exception as exc:
            raise NotFound(f"library image {path} could not be rendered ({type(exc).__name__}: {exc})") from exc

    return _cached(cache_dir, f"{path}|{key}|{size}", make)


def fit_raster(path: Path, size: int, cache_dir: Path | None, key: str = "") -> ImageData:
    """A raster image as PNG, JPEG or WebP, its longer side scaled up to ``size`` pixels if it is
    smaller (cached); a larger image is returned as it is.

    >>> import tempfile, PIL.Image
    >>> tiny = Path(tempfile.mkdtemp()) / "stamp.png"
    >>> PIL.Image.new("RGBA", (100, 50), "red").save(tiny)
    >>> img = fit_raster(tiny, 512, None)
    >>> (img.width, img.height, img.format)
    (512, 256, 'png')
    """
    try:
        image = ImageData.from_path(str(path))
    except (OSError, ValueError) as exc:
        raise NotFound(f"library image {path} cannot be read ({exc})") from exc
    longer = max(image.width, image.height)
    if longer >= size or longer == 0:
        return image if image.format in ("jpeg", "png", "webp") else image.to_png()

    def make() -> ImageData:
        from PIL import Image

        pil = image.to_pil()
        if pil.mode not in ("RGB", "RGBA", "L", "LA"):
            pil = pil.convert("RGBA")
        scale = size / longer
        target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return ImageData.from_pil(pil.resize(target, Image.Resampling.LANCZOS), "png")

    return _cached(cache_dir, f"{path}|{key}|fit{size}", make)
