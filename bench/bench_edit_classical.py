"""Time the offline classical editor on a 512x512 picture.

Prints the median time of each operation (plan + pixels), and, for background replacement,
mediapipe person segmentation against OpenCV GrabCut measured in the same run.

    python bench/bench_edit_classical.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from PIL import Image

from llmi.image import ImageData
from llmi.tools.classical.ops import Segmenter
from llmi.tools.classical.editor import apply_plan, plan_edit

PROMPTS = [
    "black and white", "sepia", "pencil sketch", "cartoon", "stylize", "blur", "sharpen",
    "brighter and more contrast", "add a blue tint", "invert", "rotate 90 degrees",
    "rotate 30 degrees", "flip", "crop to the center", "resize to 50%", "add the caption 'Hello 你好'",
]


def picture() -> ImageData:
    """A person on a textured background if tuxpaint's stamps are installed, else a synthetic scene."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 12, (512, 512, 3)) + np.array([90, 160, 90])
    scene = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    stamp = "/usr/share/tuxpaint/stamps/people/fireman200b.png"
    if os.path.exists(stamp):
        person = Image.open(stamp).convert("RGBA")
        person.thumbnail((400, 440))
        scene.paste(person, ((512 - person.width) // 2, 512 - person.height), person)
    else:
        yy, xx = np.mgrid[:512, :512]
        a = np.asarray(scene).copy()
        a[(yy - 256) ** 2 + (xx - 256) ** 2 < 150**2] = (240, 140, 30)
        scene = Image.fromarray(a)
    return ImageData.from_pil(scene)


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up (lazy imports, model load)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    img = picture()
    print(f"picture: {img.width}x{img.height}, median of {args.repeat}")
    for prompt in PROMPTS:
        ms = median_ms(lambda: apply_plan(img, plan_edit(prompt)), args.repeat)
        print(f"  {prompt:32s} {ms:8.1f} ms")
    plan = plan_edit("make the background white")
    grabcut = median_ms(lambda: apply_plan(img, plan, segmenter=Segmenter("grabcut")), args.repeat)
    print(f"  {'background white (grabcut)':32s} {grabcut:8.1f} ms")
    try:
        seg = Segmenter("mediapipe")
        mp = median_ms(lambda: apply_plan(img, plan, segmenter=seg), args.repeat)
        print(f"  {'background white (mediapipe)':32s} {mp:8.1f} ms   grabcut/mediapipe = {grabcut / mp:.1f}x")
    except Exception as exc:
        print(f"  mediapipe unavailable: {exc}")
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        plan_edit("rotate 90 degrees, make it black and white, then add the caption 'Q3'")
    print(f"  planning one instruction: {(time.perf_counter() - t) / n * 1e6:.0f} us")


if __name__ == "__main__":
    main()
