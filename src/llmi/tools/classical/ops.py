"""The operations of the offline classical editor, and how each is carried out on pixels.

Private to ``classical.editor``: an ``EditOp`` is one frozen step of a plan; :func:`apply_plan`
runs a plan with Pillow and OpenCV (imported lazily). Background changes need a foreground mask:
mediapipe's person segmentation when it is installed and finds a person, else OpenCV GrabCut
seeded with a rectangle 8% inside the border (the subject is assumed roughly centred).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import MissingDependency, UnsupportedEdit
from ...image import ImageData, flatten_to_rgb

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image as PILImage

__all__ = [
    "EditOp", "Grayscale", "Sepia", "Sketch", "Cartoon", "Stylize", "Blur", "Sharpen",
    "Brightness", "Contrast", "Saturation", "Tint", "Invert", "Rotate", "Flip", "Crop",
    "CropSquare", "Resize", "Caption", "Background", "Segmenter", "apply_plan", "MAX_SIDE",
    "ELSEWHERE",
]

#: no side of a result may exceed this (a resize asking for more is refused)
MAX_SIDE = 8192

ELSEWHERE = (
    "For free-form edits use a generative editor: the Qwen-Image-Edit server "
    "(set QWEN_EDIT_SERVER_URL) or SeedEdit (set ARK_API_KEY)."
)

RGB = tuple[int, int, int]


# ---------------------------------------------------------------------------------------------
# The plan: one frozen value per operation


@dataclass(frozen=True)
class EditOp:
    """One step of a plan. ``name`` is the recorded operation name."""

    name: ClassVar[str] = "op"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.name, **asdict(self)}


@dataclass(frozen=True)
class Grayscale(EditOp):
    name: ClassVar[str] = "grayscale"


@dataclass(frozen=True)
class Sepia(EditOp):
    name: ClassVar[str] = "sepia"


@dataclass(frozen=True)
class Sketch(EditOp):
    name: ClassVar[str] = "sketch"
    color: bool = False


@dataclass(frozen=True)
class Cartoon(EditOp):
    name: ClassVar[str] = "cartoon"


@dataclass(frozen=True)
class Stylize(EditOp):
    name: ClassVar[str] = "stylize"


@dataclass(frozen=True)
class Blur(EditOp):
    """Gaussian blur; ``strength`` 1.0 is a sigma of 1% of the shorter side."""

    name: ClassVar[str] = "blur"
    strength: float = 1.0
    radius_px: float | None = None


@dataclass(frozen=True)
class Sharpen(EditOp):
    name: ClassVar[str] = "sharpen"
    amount: float = 1.0


@dataclass(frozen=True)
class Brightness(EditOp):
    name: ClassVar[str] = "brightness"
    factor: float = 1.3


@dataclass(frozen=True)
class Contrast(EditOp):
    name: ClassVar[str] = "contrast"
    factor: float = 1.3


@dataclass(frozen=True)
class Saturation(EditOp):
    name: ClassVar[str] = "saturation"
    factor: float = 1.3


@dataclass(frozen=True)
class Tint(EditOp):
    """Blend the picture towards ``color`` by ``strength`` (0..1)."""

    name: ClassVar[str] = "tint"
    color: RGB = (255, 255, 255)
    strength: float = 0.25


@dataclass(frozen=True)
class Invert(EditOp):
    name: ClassVar[str] = "invert"


@dataclass(frozen=True)
class Rotate(EditOp):
    """Rotate by ``degrees`` clockwise (negative: counter-clockwise); the canvas grows to fit."""

    name: ClassVar[str] = "rotate"
    degrees: float = 90.0


@dataclass(frozen=True)
class Flip(EditOp):
    name: ClassVar[str] = "flip"
    axis: str = "horizontal"  # "horizontal" mirrors left-right, "vertical" top-bottom


@dataclass(frozen=True)
class Crop(EditOp):
    """Keep the box given as fractions of width and height."""

    name: ClassVar[str] = "crop"
    left: float = 0.0
    top: float = 0.0
    right: float = 1.0
    bottom: float = 1.0


@dataclass(frozen=True)
class CropSquare(EditOp):
    name: ClassVar[str] = "crop_square"


@dataclass(frozen=True)
class Resize(EditOp):
    """Either a ``scale`` factor, or a target ``width`` and/or ``height`` (aspect kept if one)."""

    name: ClassVar[str] = "resize"
    scale: float | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Caption(EditOp):
    name: ClassVar[str] = "caption"
    text: str = ""
    position: str = "bottom"  # "top" | "bottom" | "center"


@dataclass(frozen=True)
class Background(EditOp):
    """Change what is behind the subject: ``color``, ``blur``, ``grayscale`` or ``transparent``."""

    name: ClassVar[str] = "background"
    mode: str = "color"
    color: RGB | None = None


# ---------------------------------------------------------------------------------------------
# Carrying out a plan

_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def _cv2() -> Any:
    return MissingDependency.require("cv2", "edit", "opencv-python-headless")


class Segmenter:
    """A soft foreground mask (1 = subject) for background changes.

    ``method`` is ``auto`` (mediapipe's person segmentation when it is installed and finds a
    person, else GrabCut), ``mediapipe`` or ``grabcut``.
    """

    def __init__(self, method: str = "auto") -> None:
        if method not in ("auto", "mediapipe", "grabcut"):
            raise ValueError(f"unknown segmentation method {method!r}")
        self.method = method
        self._lock = threading.Lock()
        self._selfie: Any = None

    def mask(self, rgb: "np.ndarray") -> tuple["np.ndarray", str]:
        if self.method in ("auto", "mediapipe"):
            person = self._mediapipe(rgb)
            if person is not None and float((person > 0.5).mean()) >= 0.02:
                return person, "mediapipe-selfie"
            if self.method == "mediapipe":
                raise UnsupportedEdit(
                    "mediapipe found no person to keep in front of the background. " + ELSEWHERE
                )
        return self._grabcut(rgb), "grabcut"

    def _mediapipe(self, rgb: "np.ndarray") -> "np.ndarray | None":
        import numpy as np

        try:
            import mediapipe as mp  # optional; see docs/image-backends.md for installing it

            selfie = mp.solutions.selfie_segmentation  # gone from releases after 0.10.21
        except Exception:
            if self.method == "mediapipe":
                raise MissingDependency("mediapipe==0.10.21", "edit") from None
            return None
        with self._lock:  # one graph, not thread-safe: serialise its use
            if self._selfie is None:
                self._selfie = selfie.SelfieSegmentation(model_selection=1)
            result = self._selfie.process(np.ascontiguousarray(rgb))
        mask = result.segmentation_mask
        return None if mask is None else np.clip(mask.astype(np.float32), 0, 1)

    @staticmethod
    def _grabcut(rgb: "np.ndarray") -> "np.ndarray":
        # GrabCut from a rectangle 8% inside the border: the subject is assumed roughly centred
        import numpy as np

        cv2 = _cv2()
        h, w = rgb.shape[:2]
        scale = min(1.0, 400 / max(h, w))
        small = cv2.resize(rgb, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        mx, my = max(1, round(sw * 0.08)), max(1, round(sh * 0.08))
        rect = (mx, my, sw - 2 * mx, sh - 2 * my)
        labels = np.zeros((sh, sw), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), labels, rect, bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
        fg = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
        if fg.mean() < 0.01:
            raise UnsupportedEdit(
                "GrabCut found no subject to keep in front of the background. " + ELSEWHERE
            )
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
        k = max(3, (min(h, w) // 100) | 1)
        return np.clip(cv2.GaussianBlur(fg, (k, k), 0), 0, 1)


def _load_font(size: int, font_path: str | None) -> Any:
    from PIL import ImageFont

    for path in ((font_path,) if font_path else ()) + _FONTS:
        if path and os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def _draw_caption(im: "PILImage.Image", op: Caption, font_path: str | None) -> "PILImage.Image":
    from PIL import ImageDraw

    im = im.copy()
    draw = ImageDraw.Draw(im)
    w, h = im.size
    size = max(10, min(h // 12, w // 10))
    while True:
        font = _load_font(size, font_path)
        lines = _wrap(op.text, font, draw, w * 0.92)
        if len(lines) <= 3 or size <= 10:
            break
        size = max(10, int(size * 0.8))
    stroke = max(1, size // 12)
    line_h = int(size * 1.25)
    block = line_h * len(lines)
    margin = max(2, h // 40)
    y = {"top": margin, "center": (h - block) // 2}.get(op.position, h - block - margin)
    for line in lines:
        tw = draw.textlength(line, font=font)
        draw.text(((w - tw) / 2, y), line, font=font, fill=(255, 255, 255),
                  stroke_width=stroke, stroke_fill=(0, 0, 0))
        y += line_h
    return im


def _wrap(text: str, font: Any, draw: Any, width: float) -> list[str]:
    # words where there are spaces, characters where there are not (CJK)
    units = re.findall(r"\S+\s*", text) if " " in text.strip() else list(text)
    lines, cur = [], ""
    for unit in units:
        if cur and draw.textlength((cur + unit).rstrip(), font=font) > width:
            lines.append(cur.rstrip())
            cur = unit
        else:
            cur += unit
    if cur.strip():
        lines.append(cur.rstrip())
    return lines


def _apply(im: "PILImage.Image", op: EditOp, ctx: dict[str, Any]) -> "PILImage.Image":
    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    w, h = im.size
    rgb = im.convert("RGB")
    if isinstance(op, Grayscale):
        return ImageOps.grayscale(rgb).convert("RGB")
    if isinstance(op, Sepia):
        a = np.asarray(rgb, np.float32)
        m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
        return Image.fromarray(np.clip(a @ m.T, 0, 255).astype(np.uint8))
    if isinstance(op, Sketch):
        cv2 = _cv2()
        a = np.ascontiguousarray(np.asarray(rgb))
        if op.color:
            return Image.fromarray(cv2.pencilSketch(a, sigma_s=60, sigma_r=0.07, shade_factor=0.05)[1])
        # "colour dodge" of the grey image by its blurred negative: white paper, pencil lines
        gray = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
        blurred = cv2.GaussianBlur(255 - gray, (0, 0), sigmaX=max(1.0, min(w, h) / 60))
        return Image.fromarray(cv2.divide(gray, 255 - blurred, scale=256)).convert("RGB")
    if isinstance(op, Cartoon):
        return Image.fromarray(_cartoon(np.asarray(rgb)))
    if isinstance(op, Stylize):
        cv2 = _cv2()
        return Image.fromarray(cv2.stylization(np.ascontiguousarray(np.asarray(rgb)), sigma_s=60, sigma_r=0.45))
    if isinstance(op, Blur):
        sigma = op.radius_px if op.radius_px is not None else op.strength * 0.01 * min(w, h)
        return rgb.filter(ImageFilter.GaussianBlur(max(0.5, sigma)))
    if isinstance(op, Sharpen):
        radius = max(1.0, min(w, h) / 300)
        return rgb.filter(ImageFilter.UnsharpMask(radius=radius, percent=int(150 * op.amount), threshold=2))
    if isinstance(op, Brightness):
        return ImageEnhance.Brightness(rgb).enhance(op.factor)
    if isinstance(op, Contrast):
        return ImageEnhance.Contrast(rgb).enhance(op.factor)
    if isinstance(op, Saturation):
        return ImageEnhance.Color(rgb).enhance(op.factor)
    if isinstance(op, Tint):
        return Image.blend(rgb, Image.new("RGB", rgb.size, op.color), op.strength)
    if isinstance(op, Invert):
        return ImageOps.invert(rgb)
    if isinstance(op, Rotate):
        turns = {90.0: Image.Transpose.ROTATE_270, -90.0: Image.Transpose.ROTATE_90,
                 180.0: Image.Transpose.ROTATE_180, -180.0: Image.Transpose.ROTATE_180,
                 270.0: Image.Transpose.ROTATE_90, -270.0: Image.Transpose.ROTATE_270}
        if op.degrees % 360 == 0:
            return rgb
        if op.degrees in turns:  # exact, lossless quarter turns
            return rgb.transpose(turns[op.degrees])
        return rgb.rotate(-op.degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    if isinstance(op, Flip):
        return ImageOps.mirror(rgb) if op.axis == "horizontal" else ImageOps.flip(rgb)
    if isinstance(op, Crop):
        box = (round(op.left * w), round(op.top * h), round(op.right * w), round(op.bottom * h))
        box = (box[0], box[1], max(box[0] + 1, box[2]), max(box[1] + 1, box[3]))
        return rgb.crop(box)
    if isinstance(op, CropSquare):
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return rgb.crop((left, top, left + side, top + side))
    if isinstance(op, Resize):
        if op.scale is not None:
            size = (round(w * op.scale), round(h * op.scale))
        elif op.width is not None and op.height is not None:
            size = (op.width, op.height)
        elif op.width is not None:
            size = (op.width, round(h * op.width / w))
        else:
            size = (round(w * op.height / h), op.height)  # type: ignore[operator]
        if max(size) > MAX_SIDE or size[0] * size[1] > MAX_SIDE * MAX_SIDE // 2:
            raise UnsupportedEdit(f"resizing to {size[0]}x{size[1]} exceeds the {MAX_SIDE} px limit")
        return rgb.resize((max(1, size[0]), max(1, size[1])), Image.Resampling.LANCZOS)
    if isinstance(op, Caption):
        return _draw_caption(rgb, op, ctx.get("font_path"))
    if isinstance(op, Background):
        return _background(rgb, op, ctx)
    raise TypeError(f"no implementation for {op!r}")  # pragma: no cover - every EditOp has one


def _cartoon(a: "np.ndarray", colors: int = 8) -> "np.ndarray":
    """Flat colour regions (k-means palette of a smoothed copy) with dark outlines."""
    import numpy as np

    cv2 = _cv2()
    smooth = cv2.edgePreservingFilter(np.ascontiguousarray(a), flags=1, sigma_s=60, sigma_r=0.4)
    pixels = smooth.reshape(-1, 3).astype(np.float32)
    sample = pixels[:: max(1, len(pixels) // 20000)]
    k = min(colors, len(np.unique(sample, axis=0)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    cv2.setRNGSeed(0)  # the same picture gives the same palette
    _, _, centres = cv2.kmeans(sample, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    nearest = np.empty(len(pixels), np.int64)
    for i in range(0, len(pixels), 1 << 18):  # in slices: pixels x palette distances stay small
        part = pixels[i : i + (1 << 18)]
        nearest[i : i + len(part)] = np.argmin(((part[:, None, :] - centres[None, :, :]) ** 2).sum(-1), axis=1)
    flat = centres[nearest].reshape(a.shape).round().astype(np.uint8)
    gray = cv2.medianBlur(cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY), 5)
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 7)
    return cv2.bitwise_and(flat, flat, mask=edges)


def _background(rgb: "PILImage.Image", op: Background, ctx: dict[str, Any]) -> "PILImage.Image":
    import numpy as np
    from PIL import Image, ImageFilter, ImageOps

    a = np.asarray(rgb)
    mask, method = ctx["segmenter"].mask(a)
    ctx.setdefault("segmentation", []).append(method)
    if op.mode == "transparent":
        return Image.fromarray(np.dstack([a, (mask * 255).round().astype(np.uint8)]), "RGBA")
    if op.mode == "blur":
        back = np.asarray(rgb.filter(ImageFilter.GaussianBlur(max(2.0, 0.02 * min(rgb.size)))))
    elif op.mode == "grayscale":
        back = np.asarray(ImageOps.grayscale(rgb).convert("RGB"))
    else:
        back = np.broadcast_to(np.array(op.color or (255, 255, 255), np.uint8), a.shape)
    m = mask[..., None]
    return Image.fromarray((a * m + back * (1 - m)).round().astype(np.uint8))


def apply_plan(
    image: ImageData,
    plan: tuple[EditOp, ...],
    *,
    segmenter: Segmenter | None = None,
    font_path: str | None = None,
) -> tuple[ImageData, dict[str, Any]]:
    """Carry out ``plan`` on ``image``; returns the result and facts worth recording."""
    ctx: dict[str, Any] = {"segmenter": segmenter or Segmenter(), "font_path": font_path}
    im = flatten_to_rgb(image.to_pil())
    for op in plan:
        if im.mode == "RGBA":  # a transparent background stays transparent under later steps
            alpha = im.getchannel("A")
            out = _apply(im, op, ctx)
            im = out if out.mode == "RGBA" or out.size != alpha.size else _with_alpha(out, alpha)
        else:
            im = _apply(im, op, ctx)
    fmt = "jpeg" if image.format == "jpeg" and im.mode == "RGB" else "png"
    info: dict[str, Any] = {}
    if "segmentation" in ctx:
        info["segmentation"] = ctx["segmentation"]
    return ImageData.from_pil(im, fmt), info


def _with_alpha(im: "PILImage.Image", alpha: "PILImage.Image") -> "PILImage.Image":
    out = im.convert("RGBA")
    out.putalpha(alpha)
    return out
