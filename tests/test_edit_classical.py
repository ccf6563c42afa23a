"""The offline classical editor: the planner's rule set, and every operation on real pixels."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
from PIL import Image

from llmi.errors import ToolError, UnsupportedEdit
from llmi.image import ImageData
from llmi.tags import ImageRequest
from llmi.tools import ToolCall, load_backend
from llmi.tools.classical.ops import Segmenter
from llmi.tools.classical.editor import (
    Background,
    Blur,
    Brightness,
    Caption,
    Cartoon,
    ClassicalEdit,
    Contrast,
    Crop,
    CropSquare,
    Flip,
    Grayscale,
    Invert,
    Resize,
    Rotate,
    Saturation,
    Sepia,
    Sharpen,
    Sketch,
    Stylize,
    Tint,
    apply_plan,
    plan_edit,
)

BLUE = (30, 80, 220)

# -- the rule set ------------------------------------------------------------------------------

PLANS = [
    ("make it black and white", (Grayscale(),)),
    ("Convert this photo to grayscale", (Grayscale(),)),
    ("give it a sepia tone", (Sepia(),)),
    ("make it look like a pencil sketch", (Sketch(),)),
    ("a coloured pencil sketch please", (Sketch(color=True),)),
    ("cartoonize it", (Cartoon(),)),
    ("make it look like an oil painting", (Stylize(),)),
    ("slightly blur the image", (Blur(strength=0.5),)),
    ("blur it with a radius of 6 px", (Blur(radius_px=6.0),)),
    ("sharpen the photo", (Sharpen(),)),
    ("make it brighter", (Brightness(factor=1.3),)),
    ("make it a lot darker", (Brightness(factor=0.4),)),
    ("increase the brightness by 20%", (Brightness(factor=1.2),)),
    ("more contrast", (Contrast(factor=1.3),)),
    ("reduce the contrast", (Contrast(factor=0.7),)),
    ("make the colours more vivid", (Saturation(factor=1.3),)),
    ("make it warmer", (Tint(color=(255, 150, 50), strength=0.15),)),
    ("add a blue tint", (Tint(color=BLUE, strength=0.3),)),
    ("invert the colors", (Invert(),)),
    ("rotate 90 degrees", (Rotate(degrees=90.0),)),
    ("rotate it 45 degrees counterclockwise", (Rotate(degrees=-45.0),)),
    ("rotate left", (Rotate(degrees=-90.0),)),
    ("turn it upside down", (Rotate(degrees=180.0),)),
    ("flip it horizontally", (Flip(axis="horizontal"),)),
    ("mirror the picture", (Flip(axis="horizontal"),)),
    ("flip vertically", (Flip(axis="vertical"),)),
    ("crop to the center", (Crop(0.125, 0.125, 0.875, 0.875),)),
    ("crop the left half", (Crop(0.0, 0.0, 0.5, 1.0),)),
    ("crop to a square", (CropSquare(),)),
    ("zoom in 2x", (Crop(0.25, 0.25, 0.75, 0.75),)),
    ("resize to 256x128", (Resize(width=256, height=128),)),
    ("scale it to 50%", (Resize(scale=0.5),)),
    ("resize to 800 pixels wide", (Resize(width=800),)),
    ("add the caption 'Hello, and welcome'", (Caption(text="Hello, and welcome"),)),
    ('write "Top story" at the top', (Caption(text="Top story", position="top"),)),
    ("add a caption saying Bonjour tout le monde", (Caption(text="Bonjour tout le monde"),)),
    ("make the background blue", (Background(mode="color", color=BLUE),)),
    ("put it on a plain white background", (Background(mode="color", color=(255, 255, 255)),)),
    ("blur the background", (Background(mode="blur"),)),
    ("remove the background", (Background(mode="transparent"),)),
    ("make the background black and white", (Background(mode="grayscale"),)),
    (
        "Rotate 90 degrees, make it black and white, then add the caption 'Done'",
        (Rotate(degrees=90.0), Grayscale(), Caption(text="Done")),
    ),
    ("convert the chart to grayscale", (Grayscale(),)),
    ("make the drawing black and white", (Grayscale(),)),  # "drawing" names the picture here
    ("turn it into a pencil drawing", (Sketch(),)),
    ("make the colors pop", (Saturation(factor=1.3),)),
    ("把图片变成黑白", (Grayscale(),)),
    ("顺时针旋转90度", (Rotate(degrees=90.0),)),
    ("背景换成蓝色", (Background(mode="color", color=BLUE),)),
    ("添加文字“你好”", (Caption(text="你好"),)),
    ("在图片上添加文字“销售额”", (Caption(text="销售额"),)),
    ("逆时针旋转45度", (Rotate(degrees=-45.0),)),
    ("提高对比度并锐化", (Contrast(factor=1.3), Sharpen())),
]


@pytest.mark.parametrize("prompt, plan", PLANS, ids=[p for p, _ in PLANS])
def test_planner_rules(prompt: str, plan: tuple) -> None:
    assert plan_edit(prompt) == plan


UNSUPPORTED = [
    ("add a dog wearing a hat", "dog"),
    ("replace the background with a beach", "beach"),
    ("make her smile", "smile"),
    ("make it black and white and add a dog", "dog"),  # half-understood: refused as a whole
    ("change the sky to sunset", "sky"),
    ("remove the car", "car"),
    ("给图片加一只狗", "狗"),
    ("enhance the image", "enhance"),  # too vague to do honestly
    ("replace 'cat' with 'dog'", "replace"),
    ("", ""),
    ("please", "please"),
]


@pytest.mark.parametrize("prompt, named", UNSUPPORTED)
def test_unsupported_instructions_name_the_backends_that_can(prompt: str, named: str) -> None:
    with pytest.raises(UnsupportedEdit) as info:
        plan_edit(prompt)
    message = str(info.value)
    assert "QWEN_EDIT_SERVER_URL" in message and "ARK_API_KEY" in message
    assert named in message
    assert not info.value.transient


def test_out_of_range_numbers_are_refused() -> None:
    for prompt in ("resize to 100000x100000", "rotate 1000 degrees", "zoom in 50x", "crop to 1%",
                   "add the caption '" + "long " * 100 + "'"):
        with pytest.raises(UnsupportedEdit):
            plan_edit(prompt)


def test_plans_are_frozen_values() -> None:
    op = plan_edit("rotate 90 degrees")[0]
    with pytest.raises(AttributeError):
        op.degrees = 10  # type: ignore[misc]
    assert op.to_dict() == {"op": "rotate", "degrees": 90.0}


# -- operations on real pixels -----------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> ImageData:
    """96x64: a red left half, a blue right half, a green square near the top-left, some noise."""
    rng = np.random.default_rng(1)
    a = np.zeros((64, 96, 3), np.int16)
    a[:, :48] = (200, 50, 40)
    a[:, 48:] = (40, 70, 190)
    a[4:20, 4:20] = (30, 180, 60)
    a += rng.integers(-12, 12, a.shape, dtype=np.int16)
    return ImageData.from_pil(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))


def edit(image: ImageData, prompt: str, **kw: object) -> np.ndarray:
    out, _ = apply_plan(image, plan_edit(prompt), **kw)  # type: ignore[arg-type]
    return np.asarray(out.to_pil())


def arr(image: ImageData) -> np.ndarray:
    return np.asarray(image.to_pil().convert("RGB")).astype(np.int16)


def test_grayscale_has_equal_channels(photo: ImageData) -> None:
    out = edit(photo, "black and white")
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_sepia_is_warm_monotone(photo: ImageData) -> None:
    out = edit(photo, "sepia").astype(int)
    assert (out[..., 0] >= out[..., 1]).all() and (out[..., 1] >= out[..., 2]).all()


def test_sketch_is_grey_and_light(photo: ImageData) -> None:
    out = edit(photo, "pencil sketch")
    assert np.array_equal(out[..., 0], out[..., 2]) and out.mean() > arr(photo).mean()


@pytest.mark.parametrize("prompt", ["cartoon", "stylize", "colour sketch"])
def test_styles_keep_size_and_change_pixels(photo: ImageData, prompt: str) -> None:
    out = edit(photo, prompt)
    assert out.shape == arr(photo).shape and np.abs(out - arr(photo)).mean() > 3


def test_cartoon_uses_few_flat_colours(photo: ImageData) -> None:
    out = edit(photo, "cartoon")
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 9  # 8 palette colours + black outlines
    assert len(np.unique(arr(photo).reshape(-1, 3), axis=0)) > 500


def test_blur_smooths_and_sharpen_sharpens(photo: ImageData) -> None:
    def roughness(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a.astype(int), axis=1)).mean())

    base = roughness(arr(photo))
    assert roughness(edit(photo, "blur")) < base * 0.7
    assert roughness(edit(photo, "sharpen")) > base * 1.2


def test_tone_adjustments(photo: ImageData) -> None:
    base = arr(photo)
    assert edit(photo, "brighter").mean() > base.mean() + 10
    assert edit(photo, "darker").mean() < base.mean() - 10
    assert edit(photo, "more contrast").std() > base.std() * 1.1
    hsv = lambda a: np.asarray(Image.fromarray(a.astype(np.uint8)).convert("HSV"))[..., 1].mean()
    assert hsv(edit(photo, "more saturated")) > hsv(base) + 5
    assert hsv(edit(photo, "less saturated")) < hsv(base) - 5
    tinted = edit(photo, "add a blue tint").astype(int)
    assert tinted[..., 2].mean() > base[..., 2].mean() + 10 and tinted[..., 0].mean() < base[..., 0].mean()
    warm = edit(photo, "make it warmer").astype(int)
    assert warm[..., 0].mean() - warm[..., 2].mean() > base[..., 0].mean() - base[..., 2].mean()


def test_invert(photo: ImageData) -> None:
    assert np.array_equal(edit(photo, "invert"), 255 - arr(photo))


def test_rotate_quarter_turns_are_exact(photo: ImageData) -> None:
    base = arr(photo)
    cw = edit(photo, "rotate 90 degrees clockwise")
    assert cw.shape == (96, 64, 3) and np.array_equal(cw, np.rot90(base, k=-1))
    ccw = edit(photo, "rotate left")
    assert np.array_equal(ccw, np.rot90(base, k=1))
    assert np.array_equal(edit(photo, "turn it upside down"), base[::-1, ::-1])


def test_rotate_any_angle_grows_the_canvas(photo: ImageData) -> None:
    out = edit(photo, "rotate 30 degrees")
    assert out.shape[0] > 64 and out.shape[1] > 96
    assert tuple(out[0, 0]) == (255, 255, 255)  # the new corners are white


def test_flip_mirrors_pixels(photo: ImageData) -> None:
    base = arr(photo)
    assert np.array_equal(edit(photo, "flip horizontally"), base[:, ::-1])
    assert np.array_equal(edit(photo, "flip vertically"), base[::-1])


def test_crop_and_resize(photo: ImageData) -> None:
    base = arr(photo)
    assert np.array_equal(edit(photo, "crop the left half"), base[:, :48])
    assert edit(photo, "crop to the center").shape == (48, 72, 3)
    assert edit(photo, "crop to a square").shape == (64, 64, 3)
    assert edit(photo, "zoom in 2x").shape == (32, 48, 3)
    assert edit(photo, "resize to 50%").shape == (32, 48, 3)
    assert edit(photo, "resize to 30x20").shape == (20, 30, 3)
    assert edit(photo, "resize to 48 pixels wide").shape == (32, 48, 3)


def test_caption_draws_in_the_bottom_band_only() -> None:
    blank = ImageData.blank(200, 120, "gray")
    out = edit(blank, "add the caption 'Hello world'").astype(int)
    changed = np.abs(out - 128).sum(axis=2) > 0
    assert changed[90:].sum() > 100  # text in the bottom band
    assert changed[:60].sum() == 0  # nothing near the top
    top = edit(blank, "write 'Hi' at the top").astype(int)
    assert (np.abs(top - 128).sum(axis=2) > 0)[:30].sum() > 30


def test_caption_renders_cjk_glyphs_not_boxes() -> None:
    if not os.path.exists("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"):
        pytest.skip("no CJK font installed (Debian: fonts-wqy-zenhei)")
    blank = ImageData.blank(200, 120, "gray")
    a, b = edit(blank, "添加文字“你好”"), edit(blank, "添加文字“世界”")
    assert not np.array_equal(a, b)  # missing glyphs would draw the same two boxes


def _subject_on_background() -> ImageData:
    """A textured orange disc in the middle of a textured green field."""
    rng = np.random.default_rng(3)
    h, w = 120, 160
    yy, xx = np.mgrid[:h, :w]
    a = np.empty((h, w, 3), np.int16)
    a[:] = (60, 150, 70)
    disc = (yy - 60) ** 2 + (xx - 80) ** 2 < 35**2
    a[disc] = (240, 140, 30)
    a += rng.integers(-15, 15, a.shape, dtype=np.int16)
    return ImageData.from_pil(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))


def test_background_replacement_with_grabcut() -> None:
    image = _subject_on_background()
    out, info = apply_plan(image, plan_edit("make the background blue"), segmenter=Segmenter("grabcut"))
    px = np.asarray(out.to_pil()).astype(int)
    assert info["segmentation"] == ["grabcut"]
    assert np.abs(px[3, 3] - BLUE).max() <= 2 and np.abs(px[115, 155] - BLUE).max() <= 2  # corners blue
    assert px[60, 80, 0] > 200 and px[60, 80, 2] < 80  # the subject is untouched


def test_background_removal_and_blur_with_grabcut() -> None:
    image = _subject_on_background()
    seg = Segmenter("grabcut")
    out, _ = apply_plan(image, plan_edit("remove the background"), segmenter=seg)
    alpha = np.asarray(out.to_pil())[..., 3]
    assert out.format == "png" and alpha[3, 3] == 0 and alpha[60, 80] == 255
    blurred = np.asarray(apply_plan(image, plan_edit("blur the background"), segmenter=seg)[0].to_pil()).astype(int)
    base = arr(image)
    assert np.abs(np.diff(blurred[:20], axis=1)).mean() < np.abs(np.diff(base[:20], axis=1)).mean() * 0.6
    assert np.abs(blurred[55:65, 75:85] - base[55:65, 75:85]).mean() < 2


def test_background_with_mediapipe_person_segmentation() -> None:
    mp = pytest.importorskip("mediapipe")
    if not hasattr(mp, "solutions"):
        pytest.skip("this mediapipe release has no bundled person segmentation (use 0.10.21)")
    path = "/usr/share/tuxpaint/stamps/people/fireman200b.png"
    if not os.path.exists(path):
        pytest.skip("tuxpaint-stamps-default is not installed")
    person = Image.open(path).convert("RGBA")
    scene = Image.new("RGB", (person.width + 120, person.height + 80), (90, 160, 90))
    scene.paste(person, (60, 40), person)
    out, info = apply_plan(ImageData.from_pil(scene), plan_edit("make the background white"), segmenter=Segmenter("auto"))
    assert info["segmentation"] == ["mediapipe-selfie"]
    px = np.asarray(out.to_pil()).astype(int)
    assert (px[5, 5] == 255).all()  # background replaced
    assert np.abs(px[person.height // 2 + 40, person.width // 2 + 60] - (90, 160, 90)).sum() > 60  # person kept


def test_inputs_are_flattened_and_jpeg_stays_jpeg() -> None:
    rgba = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    out, _ = apply_plan(ImageData.from_pil(rgba), plan_edit("invert"))
    assert out.to_pil().mode == "RGB" and out.to_pil().getpixel((0, 0)) == (0, 0, 0)  # white inverted
    jpeg = ImageData.from_pil(Image.new("RGB", (40, 30), "red"), "jpeg")
    assert apply_plan(jpeg, plan_edit("flip"))[0].format == "jpeg"


def test_transparency_survives_later_steps() -> None:
    image = _subject_on_background()
    out, _ = apply_plan(image, plan_edit("remove the background and flip it"), segmenter=Segmenter("grabcut"))
    im = out.to_pil()
    assert im.mode == "RGBA" and im.getpixel((2, 2))[3] == 0


# -- the tool ----------------------------------------------------------------------------------


def call(prompt: str, image: ImageData | None) -> ToolCall:
    return ToolCall(ImageRequest("edit", "d", {"img_index": 0, "prompt": prompt}), input_image=image, timeout=30)


def test_tool_records_the_plan(photo: ImageData) -> None:
    tool = load_backend("edit", "classical")()
    assert isinstance(tool, ClassicalEdit) and (tool.source, tool.backend) == ("edit", "classical")
    out = asyncio.run(tool.run(call("flip it and make it black and white", photo)))
    assert out.info["plan"] == [{"op": "flip", "axis": "horizontal"}, {"op": "grayscale"}]
    assert out.info["backend"] == "classical"
    px = np.asarray(out.image.to_pil())
    assert np.array_equal(px[..., 0], px[..., 1])


def test_tool_failures() -> None:
    tool = ClassicalEdit.from_env({"LLMI_SEGMENTATION": "grabcut"})
    with pytest.raises(UnsupportedEdit, match="QWEN_EDIT_SERVER_URL"):
        asyncio.run(tool.run(call("add a dog wearing a hat", ImageData.blank(20, 20))))
    with pytest.raises(ToolError, match="input image"):
        asyncio.run(tool.run(call("invert", None)))
    with pytest.raises(ValueError):
        ClassicalEdit(segmentation="magic")
