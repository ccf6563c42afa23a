"""The offline edit backend: instructions OpenCV and Pillow can carry out honestly.

An instruction becomes a *plan* — a tuple of frozen ``EditOp`` values — by a small, deterministic
rule set (:func:`plan_edit`), and the plan is applied to the picture in order. The plan is
recorded in ``ToolOutput.info["plan"]``, so a document shows exactly what was done.

What it can do: black-and-white, sepia, pencil sketch, cartoon, stylise (painterly), blur,
sharpen, brightness / contrast / saturation, warm / cool / colour tint, invert, rotate, flip,
crop (centre, zoom, halves, square), resize, caption text (CJK-capable font when installed), and
background changes (replace with a colour, blur, grey, remove) using person segmentation
(mediapipe, when installed) or OpenCV GrabCut around the centred subject.

What it cannot do: anything that has to invent content ("add a dog wearing a hat", "replace the
background with a beach", "make her smile"). Such an instruction — or any instruction with a
part the rules do not understand — fails as a whole with ``UnsupportedEdit``, whose message names
the backends that can (the Qwen-Image-Edit server, or SeedEdit). Half an edit is never done
silently.

>>> plan_edit("rotate 90 degrees and make it black and white")
(Rotate(degrees=90.0), Grayscale())
"""

from __future__ import annotations

import asyncio
import re
from typing import Callable, ClassVar, Mapping

from ...errors import ToolError, ToolTimeout, UnsupportedEdit
from .ops import (
    ELSEWHERE,
    MAX_SIDE,
    Background,
    Blur,
    Brightness,
    Caption,
    Cartoon,
    Contrast,
    Crop,
    CropSquare,
    EditOp,
    Flip,
    Grayscale,
    Invert,
    Resize,
    Rotate,
    Saturation,
    Segmenter,
    Sepia,
    Sharpen,
    Sketch,
    Stylize,
    Tint,
    apply_plan,
)
from ..base import ToolCall, ToolOutput

__all__ = [
    "EditOp", "Grayscale", "Sepia", "Sketch", "Cartoon", "Stylize", "Blur", "Sharpen",
    "Brightness", "Contrast", "Saturation", "Tint", "Invert", "Rotate", "Flip", "Crop",
    "CropSquare", "Resize", "Caption", "Background", "plan_edit", "apply_plan", "ClassicalEdit",
    "CAPABILITIES", "MAX_SIDE",
]

#: what the rules understand, for messages and docs
CAPABILITIES = (
    "black-and-white, sepia, pencil sketch, cartoon, stylise/painting, blur, sharpen, "
    "brighter/darker, contrast, saturation, warm/cool/colour tint, invert, rotate, flip, crop, "
    "zoom in, resize, caption text in quotes, background colour/blur/grey/removal"
)
RGB = tuple[int, int, int]
#: longer captions are refused rather than shrunk to illegibility or cut
MAX_CAPTION = 300


# ---------------------------------------------------------------------------------------------
# The rule set: instruction -> plan

COLORS: Mapping[str, RGB] = {
    "white": (255, 255, 255), "black": (0, 0, 0), "red": (220, 30, 30),
    "dark red": (139, 0, 0), "green": (40, 160, 60), "dark green": (0, 100, 0),
    "light green": (144, 238, 144), "blue": (30, 80, 220), "dark blue": (0, 0, 139),
    "navy": (0, 0, 128), "navy blue": (0, 0, 128), "light blue": (173, 216, 230),
    "sky blue": (135, 206, 235), "yellow": (250, 220, 40), "orange": (255, 140, 0),
    "purple": (128, 0, 160), "violet": (143, 0, 255), "pink": (255, 150, 190),
    "gray": (128, 128, 128), "grey": (128, 128, 128), "light gray": (211, 211, 211),
    "light grey": (211, 211, 211), "dark gray": (64, 64, 64), "dark grey": (64, 64, 64),
    "brown": (140, 80, 30), "cyan": (0, 200, 220), "magenta": (220, 0, 180),
    "teal": (0, 128, 128), "gold": (255, 200, 0), "golden": (255, 200, 0),
    "beige": (245, 235, 210), "cream": (255, 250, 220),
}
CN_COLORS: Mapping[str, RGB] = {
    "红": COLORS["red"], "绿": COLORS["green"], "蓝": COLORS["blue"], "黄": COLORS["yellow"],
    "白": COLORS["white"], "黑": COLORS["black"], "灰": COLORS["gray"], "紫": COLORS["purple"],
    "粉": COLORS["pink"], "橙": COLORS["orange"], "青": COLORS["cyan"], "棕": COLORS["brown"],
}
_COLOR = (
    r"(?:#[0-9a-f]{6}\b|\b(?:"
    + "|".join(re.escape(c).replace(r"\ ", r"\s+") for c in sorted(COLORS, key=len, reverse=True))
    + r")\b)"
)
_CN_COLOR = "(?:" + "|".join(CN_COLORS) + ")色?"
_IT = r"(?:\s+(?:it|this|that|the\s+(?:whole\s+)?(?:image|picture|photo|photograph|pic|chart|figure)))?"
_MOD = (
    r"(?:(?P<mod>slightly|a\s+(?:little|bit|touch)(?:\s+more)?|somewhat|much|a\s+lot|very|way"
    r"|strongly|heavily|significantly|far|really|extremely)\s+)?"
)
_DEG = r"(?:\s+(?P<deg>-?\d+(?:\.\d+)?)\s*(?:°|degrees?|deg\b))"
_DIR = (
    r"(?:\s+(?:to\s+the\s+)?(?P<dir>clockwise|counter[\s-]?clockwise|anti[\s-]?clockwise|ccw|cw"
    r"|left|right)\b)"
)
_PCT = r"(?:\s+by\s+(?P<pct>\d+(?:\.\d+)?)\s*(?:%|percent))?"


def _color(text: str) -> RGB:
    text = re.sub(r"\s+", " ", text.strip().lower()).removesuffix("色")
    if text.startswith("#"):
        return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))
    if text in COLORS:
        return COLORS[text]
    return CN_COLORS[text]


def _strength(m: re.Match[str]) -> float:
    mod = (m.groupdict().get("mod") or "").lower()
    if not mod:
        return 1.0
    if mod.startswith(("slightly", "a little", "a bit", "a touch", "somewhat")):
        return 0.5
    return 2.0


def _factor(m: re.Match[str], up: bool, step: float = 0.3) -> float:
    """A multiplier for brightness-like adjustments: explicit percent, else step × modifier."""
    pct = m.groupdict().get("pct")
    delta = float(pct) / 100 if pct else step * _strength(m)
    return round(1 + delta, 4) if up else round(max(0.05, 1 - delta), 4)


def _rotate(m: re.Match[str]) -> Rotate:
    deg = float(m.group("deg")) if m.group("deg") else 90.0
    direction = (m.group("dir") or "").lower().replace(" ", "").replace("-", "")
    if direction in ("counterclockwise", "anticlockwise", "ccw", "left", "totheleft", "逆时针"):
        deg = -deg
    if not -360 <= deg <= 360:
        raise UnsupportedEdit(f"cannot rotate by {deg:g} degrees; give an angle within ±360")
    return Rotate(degrees=deg)


def _flip(m: re.Match[str]) -> Flip:
    axis = (m.group("axis") or m.group("axis2") or "").lower()
    vertical = axis.startswith(("vertical", "top", "upside", "up", "垂直", "上下"))
    return Flip(axis="vertical" if vertical else "horizontal")


def _crop(m: re.Match[str]) -> EditOp:
    what = (m.group("what") or "").lower()
    side = (m.group("side") or "").lower()
    if what == "square":
        return CropSquare()
    if side:
        return {
            "left": Crop(0.0, 0.0, 0.5, 1.0), "right": Crop(0.5, 0.0, 1.0, 1.0),
            "top": Crop(0.0, 0.0, 1.0, 0.5), "upper": Crop(0.0, 0.0, 1.0, 0.5),
            "bottom": Crop(0.0, 0.5, 1.0, 1.0), "lower": Crop(0.0, 0.5, 1.0, 1.0),
        }[side]
    keep = float(m.group("pct")) / 100 if m.group("pct") else 0.75
    if not 0.05 <= keep <= 1:
        raise UnsupportedEdit(f"cannot crop to {keep:.0%} of the picture; keep 5% to 100%")
    return _centre(keep)


def _centre(keep: float) -> Crop:
    margin = round((1 - keep) / 2, 4)
    return Crop(margin, margin, round(1 - margin, 4), round(1 - margin, 4))


def _zoom(m: re.Match[str]) -> Crop:
    factor = float(m.group("x")) if m.group("x") else 1.5
    if not 1 <= factor <= 20:
        raise UnsupportedEdit(f"cannot zoom in {factor:g}×; use a factor between 1 and 20")
    return _centre(1 / factor)


def _resize(m: re.Match[str]) -> Resize:
    g = m.groupdict()
    if g.get("w"):
        op = Resize(width=int(g["w"]), height=int(g["h"]))
    elif g.get("n"):
        wide = g["dim"].lower() in ("wide", "width")
        op = Resize(width=int(g["n"])) if wide else Resize(height=int(g["n"]))
    elif g.get("rpct"):
        op = Resize(scale=float(g["rpct"]) / 100)
    elif g.get("factor"):
        op = Resize(scale=float(g["factor"]))
    else:
        raise UnsupportedEdit("resize needs a size: '512x512', '800 pixels wide', '50%' or '2x'")
    sides = [v for v in (op.width, op.height) if v is not None]
    if any(not 1 <= v <= MAX_SIDE for v in sides) or (op.scale is not None and not 0.01 <= op.scale <= 8):
        raise UnsupportedEdit(f"resize out of range: sides 1..{MAX_SIDE} px, scale 0.01..8")
    return op


def _caption(m: re.Match[str], quotes: list[str]) -> Caption:
    text = quotes[int(m.group("q"))] if m.groupdict().get("q") else m.group("text").strip()
    pos = (m.groupdict().get("pos") or "bottom").lower()
    pos = {"centre": "center", "middle": "center", "顶部": "top", "上方": "top", "底部": "bottom",
           "下方": "bottom", "中间": "center"}.get(pos, pos)
    if not text.strip():
        raise UnsupportedEdit("the caption text is empty")
    if len(text) > MAX_CAPTION:
        raise UnsupportedEdit(f"a caption of {len(text)} characters will not fit; keep it under {MAX_CAPTION}")
    return Caption(text=text.strip(), position=pos)


_Rule = tuple[re.Pattern[str], Callable[[re.Match[str], list[str]], "EditOp | None"]]


def _rule(pattern: str, build: Callable[..., EditOp]) -> _Rule:
    takes_quotes = build is _caption

    def make(m: re.Match[str], quotes: list[str]) -> EditOp | None:
        return build(m, quotes) if takes_quotes else build(m)

    return re.compile(pattern, re.I), make


def _const(op: EditOp) -> Callable[[re.Match[str]], EditOp]:
    return lambda m: op


_POS = r"(?:\s+(?:at|on|to|in|along|across)\s+(?:the\s+)?(?P<pos>top|bottom|center|centre|middle))?"
_CAPTION_WORD = r"(?:caption|text|title|label|subtitle|words?|heading|headline|note|文字|标题|字幕|说明)"

# Order matters: earlier rules claim their words first (background before colours, grey
# backgrounds before black-and-white, flips before "upside down", ...).
_RULES: tuple[_Rule, ...] = (
    # caption text: quoted (any language) or after "saying"/":" to the end
    _rule(
        r"(?:\b(?:add|put|write|insert|overlay|place|include|print)\s+|添加|加上|写上|配上|加)?(?:(?:a|the|some)\s+)?"
        r"(?:(?:big|small|short|large|white|black)\s+)?" + _CAPTION_WORD
        + r"(?:\s+(?:saying|that\s+says|which\s+says|reading|of|with|as))?\s*[:：]?\s*§(?P<q>\d+)§" + _POS,
        _caption,
    ),
    _rule(r"(?:\b(?:write|print)\s+|(?:添加|加上|写上|写)\s*)[:：]?\s*§(?P<q>\d+)§" + _POS, _caption),
    _rule(
        r"\b(?:add|put|write|insert|overlay|place)\s+(?:(?:a|the)\s+)?(?:caption|text|title|label|subtitle)"
        r"\s*(?::|\bsaying\b|\bthat\s+says\b|\breading\b)\s*(?P<text>.+)$",
        _caption,
    ),
    # background
    _rule(
        r"\b(?:remove|delete|erase|drop|cut\s+out|get\s+rid\s+of)\s+(?:the\s+)?background\b"
        r"|\b(?:make\s+)?(?:the\s+)?background\s+transparent\b|\btransparent\s+background\b"
        r"|去(?:除|掉)背景|移除背景|抠图",
        _const(Background(mode="transparent")),
    ),
    _rule(
        r"\bblur(?:red)?\s+(?:out\s+)?(?:the\s+)?background\b|\bbackground\s+blur(?:red)?\b"
        r"|\b(?:make\s+)?(?:the\s+)?background\s+(?:more\s+)?(?:blurry|blurred|out\s+of\s+focus)\b"
        r"|\bbokeh\b|\bportrait\s+mode\b|背景模糊|模糊背景|虚化背景|背景虚化",
        _const(Background(mode="blur")),
    ),
    _rule(
        r"\b(?:(?:make|turn|change|set|convert)\s+)?(?:the\s+)?background\s+(?:to\s+|into\s+)?"
        r"(?:black\s*(?:and|&|-)\s*white|gr[ae]y\s*-?\s*scale|monochrome|colou?rless)"
        r"|背景(?:变成|改成|变为)?黑白",
        _const(Background(mode="grayscale")),
    ),
    _rule(
        r"\b(?:(?:make|turn|change|replace|set|paint|colou?r|switch)\s+)?(?:the\s+)?background"
        r"(?:\s+colou?r)?\s+(?:(?:to|into|with|as|be|in)\s+)?(?:(?:a|an|plain|solid|pure|simple)\s+)*"
        r"(?P<color>" + _COLOR + r")(?:\s+(?:colou?r|one|backdrop))?"
        r"|\b(?:on|with|give\s+it|add|use|against)\s+(?:a|an)?\s*(?:(?:plain|solid|pure|simple)\s+)?"
        r"(?P<color2>" + _COLOR + r")\s+(?:background|backdrop)\b"
        r"|背景(?:换成|改成|变成|改为|换为|设为|变为|为)?(?P<color3>" + _CN_COLOR + ")"
        r"|(?P<color4>" + _CN_COLOR + ")的?背景",
        lambda m: Background(
            mode="color",
            color=_color(m.group("color") or m.group("color2") or m.group("color3") or m.group("color4")),
        ),
    ),
    # looks
    _rule(
        r"\bblack\s*(?:and|&|-|n)\s*white\b|\bb\s*&\s*w\b|\bgr[ae]y\s*-?\s*scale\b|\bmonochrome\b"
        r"|\b(?:remove|drop|strip)\s+(?:all\s+)?(?:the\s+)?colou?rs?\b|\bfully\s+desaturated?\b"
        r"|黑白|灰度|去色",
        _const(Grayscale()),
    ),
    _rule(
        r"\bsepia(?:\s+tone[sd]?)?\b|\bvintage\b|\bretro\b|\bantique\b"
        r"|\bold[\s-]+(?:fashioned\s+)?(?:photo|photograph|picture|look|style)\b|复古|怀旧|老照片|棕褐色",
        _const(Sepia()),
    ),
    _rule(
        r"(?:\b(?P<color>colou?r(?:ed|ful)?)\s+)?\b(?:pencil\s+(?:sketch|drawing)|line\s+(?:art|drawing)|sketch(?:ed|y)?)\b"
        r"|\bpencil\b"
        r"|素描|铅笔画",
        lambda m: Sketch(color=bool(m.group("color"))),
    ),
    _rule(r"\bcartoon(?:ish|ify|ize|ise|ized|ised)?\b|\bcomic(?:\s+book)?\b|卡通|漫画", _const(Cartoon())),
    _rule(
        r"\bstyli[sz](?:e|ed|ation)\b|\boil\s+paint(?:ing)?\b|\bpainting\b|\bpainterly\b|\bpainted\b"
        r"|\bwatercolou?r\b|\bartistic\b|油画|水彩|风格化|艺术",
        _const(Stylize()),
    ),
    _rule(r"\binvert(?:ed)?(?:\s+(?:the\s+)?colou?rs?)?\b|\bnegative\b|反色|负片", _const(Invert())),
    # geometry (flip before "upside down", which alone means a half turn)
    _rule(
        r"\b(?:flip(?:ped)?|mirror(?:ed)?)\b" + _IT
        + r"(?:\s+(?P<axis>horizontally|vertically|left[\s-]to[\s-]right|right[\s-]to[\s-]left"
        r"|top[\s-]to[\s-]bottom|upside[\s-]down|left[\s-]right|up[\s-]down))?"
        r"|(?P<axis2>水平|左右|垂直|上下)?翻转|镜像",
        _flip,
    ),
    _rule(
        r"\b(?:turn|rotate)\b" + _IT + r"\s+upside[\s-]down\b|\bupside[\s-]down\b|倒过来|颠倒",
        _const(Rotate(degrees=180.0)),
    ),
    _rule(
        r"\brotat(?:e|ed|ion)\b" + _IT + r"(?:\s+(?:by|through))?" + _DEG + r"?" + _DIR + r"?", _rotate
    ),
    _rule(
        r"\bturn\b" + _IT + r"(?:\s+(?:by|through))?" + _DEG + r"?" + _DIR + r"?",
        lambda m: _rotate(m) if m.group("deg") or m.group("dir") else None,
    ),
    _rule(
        r"(?P<dir>顺时针|逆时针)?旋转(?:(?P<deg>\d+(?:\.\d+)?)(?:度|°)?)?", _rotate
    ),
    _rule(
        r"\bcrop(?:ped)?\b" + _IT + r"(?:\s+(?:to|into|in|on|at))?(?:\s+(?:the|a))?"
        r"(?:\s+(?P<what>cent(?:er|re)|middle|square|(?P<side>left|right|top|bottom|upper|lower)\s+half"
        r"|(?P<pct>\d+(?:\.\d+)?)\s*%))?|裁剪|裁切",
        lambda m: _crop(m) if "crop" in m.group(0).lower() else _centre(0.75),
    ),
    _rule(
        r"\bzoom(?:ed)?\s+in\b(?:\s+(?:by\s+)?(?P<x>\d+(?:\.\d+)?)\s*(?:x|×|times)\b)?", _zoom
    ),
    _rule(
        r"\b(?:resize[d]?|re-?scale[d]?|scale[d]?)\b" + _IT
        + r"(?:\s+(?:to|by|down\s+to|up\s+to))?\s*(?:(?P<w>\d+)\s*[x×*]\s*(?P<h>\d+)(?:\s*(?:px|pixels))?"
        r"|(?P<rpct>\d+(?:\.\d+)?)\s*(?:%|percent)|(?P<n>\d+)\s*(?:px|pixels)?\s+(?P<dim>wide|width|tall|high|height)\b"
        r"|(?P<factor>\d+(?:\.\d+)?)\s*(?:x|×|times)\b)?",
        _resize,
    ),
    _rule(
        r"\b(?:half|halve)\s+(?:the\s+)?size\b|\bhalf[\s-]size\b|\bdownscale\b|\bshrink\b|\bsmaller\b"
        r"|缩小",
        _const(Resize(scale=0.5)),
    ),
    _rule(
        r"\bdouble\s+(?:the\s+)?size\b|\btwice\s+(?:as\s+)?(?:big|large)\b|\bupscale\b|\bbigger\b|\blarger\b",
        _const(Resize(scale=2.0)),
    ),
    # blur and sharpen
    _rule(
        _MOD + r"\b(?:gaussian\s+)?(?:blur(?:red|ry)?|soften|out\s+of\s+focus)\b" + _IT
        + r"(?:\s+(?:by|with\s+(?:a\s+)?radius(?:\s+of)?|radius)\s+(?P<px>\d+(?:\.\d+)?)\s*(?:px|pixels?)?)?|模糊",
        lambda m: Blur(strength=_strength(m), radius_px=float(m.group("px")) if m.group("px") else None),
    ),
    _rule(
        _MOD + r"\b(?:sharpen(?:ed)?|sharper|crisper|crisp|less\s+blurry|enhance\s+(?:the\s+)?details?)\b"
        r"|锐化|更清晰",
        lambda m: Sharpen(amount=_strength(m)),
    ),
    # tone
    _rule(
        _MOD + r"(?:\b(?:brighter|brighten|lighter|lighten|more\s+light|brightness\s+up"
        r"|(?:increase|raise|boost|up)\s+(?:the\s+)?brightness)\b" + _PCT + "|提高亮度|增加亮度|调亮|变亮|更亮)",
        lambda m: Brightness(factor=_factor(m, up=True)),
    ),
    _rule(
        _MOD + r"(?:\b(?:darker|darken|dimmer|dim|less\s+bright|brightness\s+down"
        r"|(?:decrease|reduce|lower)\s+(?:the\s+)?brightness)\b" + _PCT + "|降低亮度|减少亮度|调暗|变暗|更暗)",
        lambda m: Brightness(factor=_factor(m, up=False)),
    ),
    _rule(
        _MOD + r"(?:\b(?:(?:more|higher|increased?|boost|raise|stronger|enhance|add)\s+(?:the\s+)?contrast"
        r"|contrast\s+up|punchier)\b" + _PCT + "|提高对比度|增加对比度|增强对比度)",
        lambda m: Contrast(factor=_factor(m, up=True)),
    ),
    _rule(
        _MOD + r"(?:\b(?:(?:less|lower|decreased?|reduce|weaker)\s+(?:the\s+)?contrast|contrast\s+down)\b"
        + _PCT + "|降低对比度|减少对比度)",
        lambda m: Contrast(factor=_factor(m, up=False)),
    ),
    _rule(
        _MOD + r"(?:\b(?:(?:more|increased?|boost|raise|higher)\s+(?:the\s+)?(?:saturation|colou?rs?)"
        r"|more\s+saturated|saturate|vibrant|vivid|more\s+colou?rful|punchy|colou?rs?\s+pop)\b" + _PCT
        + "|提高饱和度|增加饱和度|更鲜艳|鲜艳)",
        lambda m: Saturation(factor=_factor(m, up=True)),
    ),
    _rule(
        _MOD + r"(?:\b(?:(?:less|reduced?|decreased?|lower)\s+(?:the\s+)?(?:saturation|colou?rs?)"
        r"|less\s+saturated|desaturated?|muted|washed[\s-]out|faded)\b" + _PCT + "|降低饱和度|减少饱和度)",
        lambda m: Saturation(factor=_factor(m, up=False, step=0.5)),
    ),
    _rule(
        _MOD + r"(?:\bwarm(?:er)?(?:\s+(?:tones?|tint|look|colou?rs?|light))?\b|暖色调|暖色)",
        lambda m: Tint(color=(255, 150, 50), strength=round(0.15 * _strength(m), 4)),
    ),
    _rule(
        _MOD + r"(?:\b(?:cooler|colder|cool(?:\s+(?:tones?|tint|look|colou?rs?))|cold(?:\s+tones?))\b|冷色调|冷色)",
        lambda m: Tint(color=(60, 130, 255), strength=round(0.15 * _strength(m), 4)),
    ),
    _rule(
        r"(?:\b(?:a|an)\s+)?(?P<color>" + _COLOR + r")(?:ish)?\s+(?:tint|tone|hue|filter|cast|wash|overlay)\b"
        r"|\btint(?:ed)?\b" + _IT + r"\s+(?:(?:to|with|in)\s+)?(?P<color2>" + _COLOR + ")"
        r"|\b(?:make|turn|colou?r)\b" + _IT + r"\s+(?:more\s+)?(?P<color3>" + _COLOR + r")(?:ish)?",
        lambda m: Tint(color=_color(m.group("color") or m.group("color2") or m.group("color3")), strength=0.3),
    ),
)

# Words that carry no operation of their own; anything else left over makes the plan unsupported.
_FILLER = frozenset(
    """a an the it its it's this that these those image picture photo photograph pic img please
    make turn convert change apply give add use set render transform let into to in on of with
    and then also as look looks like version effect style filter tone toned more bit little
    slightly much very lot strongly heavily somewhat quite too so is be should could would i we
    want you can me some whole entire overall just bit by well after before finally first next
    now but while keep same way kindly for my our your colour color colors colours mode put place
    chart graph figure plot diagram illustration artwork screenshot drawing""".split()
)
_CN_FILLER = set("在中里把将这张幅副图片像照让使其变得成为更加一点些的请给上并且然后和再稍微很非常效果风格转换改调整下个它要把它到")
_QUOTES = re.compile(r"\"([^\"]+)\"|“([^”]+)”|‘([^’]+)’|「([^」]+)」|『([^』]+)』|(?<![\w])'([^']+)'(?![\w])")
_TOKEN = re.compile(r"§\d+§|[A-Za-z]+(?:'[a-z]+)?|\d+(?:\.\d+)?|[\u3400-\u9fff]")


def plan_edit(prompt: str) -> tuple[EditOp, ...]:
    """The operations ``prompt`` asks for, in the order it names them.

    Raises ``UnsupportedEdit`` if any part of the instruction is not understood, naming that
    part and the backends that can do it.

    >>> plan_edit("flip it horizontally, then add the caption 'Hello'")
    (Flip(axis='horizontal'), Caption(text='Hello', position='bottom'))
    >>> plan_edit("add a dog wearing a hat")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    llmi.errors.UnsupportedEdit: the offline classical editor cannot do 'dog wearing hat' ...
    """
    # 1. quoted text (caption candidates) becomes placeholders, so its words are not read as commands
    quotes: list[str] = []

    def hide(m: re.Match[str]) -> str:
        quotes.append(next(g for g in m.groups() if g is not None))
        return f"§{len(quotes) - 1}§"

    text = _QUOTES.sub(hide, prompt.strip())
    # 2. each rule claims its matches; claimed spans are blanked so later rules cannot reuse them
    found: list[tuple[int, EditOp]] = []
    for pattern, build in _RULES:
        for m in list(pattern.finditer(text)):
            if not m.group(0).strip() or text[m.start() : m.end()].isspace():
                continue
            span = text[m.start() : m.end()]
            if "\0" in span:  # overlaps a span an earlier rule claimed
                continue
            op = build(m, quotes)
            if op is None:  # the rule looked but declined (e.g. "turn it" without an angle)
                continue
            found.append((m.start(), op))
            text = text[: m.start()] + "\0" * (m.end() - m.start()) + text[m.end() :]
    # 3. everything left must be filler, or the instruction is (partly) beyond this editor
    left = [
        t for t in _TOKEN.findall(text)
        if t.lower() not in _FILLER and t not in _CN_FILLER
    ]
    if left or not found:
        missing = " ".join(
            quotes[int(t.strip("§"))] if t.startswith("§") else t for t in left
        ) or prompt.strip()
        raise UnsupportedEdit(
            f"the offline classical editor cannot do {missing!r} (it can do: {CAPABILITIES}). "
            + ELSEWHERE
        )
    return tuple(op for _, op in sorted(found, key=lambda p: p[0]))


class ClassicalEdit:
    """Edit backend ``classical``: rule-planned OpenCV/Pillow edits, fully offline.

    >>> tool = ClassicalEdit()
    >>> (tool.source, tool.backend)
    ('edit', 'classical')
    """

    source: ClassVar[str] = "edit"
    backend: str = "classical"

    def __init__(self, *, segmentation: str = "auto", font_path: str | None = None) -> None:
        self._segmenter = Segmenter(segmentation)
        self.font_path = font_path

    @classmethod
    def configured(cls, env: Mapping[str, str]) -> str | None:  # noqa: ARG003 - always available
        return "no generative editor is configured; the offline classical editor"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "ClassicalEdit":
        """``LLMI_SEGMENTATION`` = auto|mediapipe|grabcut; ``LLMI_CAPTION_FONT`` = a font file."""
        return cls(
            segmentation=env.get("LLMI_SEGMENTATION", "auto") or "auto",
            font_path=env.get("LLMI_CAPTION_FONT") or None,
        )

    async def run(self, call: ToolCall) -> ToolOutput:
        # 1. what to edit and how
        if call.input_image is None:
            raise ToolError("the classical editor needs an input image to edit")
        plan = plan_edit(call.request.prompt)
        # 2. the pixels, off the event loop
        try:
            image, facts = await asyncio.wait_for(
                asyncio.to_thread(
                    apply_plan, call.input_image, plan, segmenter=self._segmenter, font_path=self.font_path
                ),
                timeout=call.timeout,
            )
        except TimeoutError:
            raise ToolTimeout(f"the classical edit took longer than {call.timeout:g} s") from None
        except ValueError as exc:  # an undecodable input image
            raise ToolError(f"cannot edit the input image: {exc}") from exc
        # 3. the result, with the plan on record
        return ToolOutput(image=image, info={"backend": self.backend, "plan": [op.to_dict() for op in plan], **facts})

    async def aclose(self) -> None:
        return None
