"""llmi's own check of a chart PNG (``tools/sandbox/png.py``) and the pixel cap every decode obeys.

The sandbox's answer is believed only as far as these checks go: dimensions against the cap
before anything is inflated, the image data inflated in bounded steps to exactly the size the
header calls for, and the format. ``ImageData`` refuses an oversized image from its header, so
the edit tools and renderers never decode one either.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import pytest
from PIL import Image

from llmi.image import MAX_PIXELS, ImageData
from llmi.tools.sandbox.png import SIGNATURE, checked_png


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, raw: bytes, *, colour: int = 0, depth: int = 8, interlace: int = 0,
        before_idat: bytes = b"", after_end: bytes = b"") -> bytes:  # fmt: skip
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    body = chunk(b"IHDR", ihdr) + before_idat + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")
    return SIGNATURE + body + after_end


def pil_png(mode: str, size=(31, 17)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1", "I;16", "LA"])
def test_real_pngs_pass_with_their_own_size(mode):
    image = checked_png(pil_png(mode), max_pixels=10_000)
    assert (image.width, image.height, image.format) == (31, 17, "png")


def test_a_matplotlib_chart_passes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 3, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    image = checked_png(buf.getvalue(), max_pixels=40_000_000)
    assert image.width > 100 and image.height > 100


def test_oversized_header_refused_before_anything_is_inflated():
    # the image data is garbage: had it been inflated, zlib would have complained first
    bomb = SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0))
    bomb += chunk(b"IDAT", b"not zlib at all") + chunk(b"IEND", b"")
    with pytest.raises(ValueError, match="12000x12000 pixels, over the limit of 40,000,000"):
        checked_png(bomb, max_pixels=40_000_000)


def test_image_data_that_inflates_past_its_header_is_refused_in_bounded_memory():
    lying = png(10, 10, bytes(200 << 20))  # 110 bytes declared, 200 MB inside (~200 kB on the wire)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="not the 110 its size needs"):
            checked_png(lying, max_pixels=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak:,} bytes"


def test_plain_text_and_image_data_split_anywhere_pass():
    """Filters are checked row by row across IDAT chunks cut at any byte; plain iTXt is fine."""
    rows = b"".join(bytes([i % 5]) + bytes(9) for i in range(3000))  # every filter type PNG has
    data = zlib.compress(rows)
    idats = b"".join(chunk(b"IDAT", data[at : at + 7]) for at in range(0, len(data), 7))
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 9, 3000, 8, 0, 0, 0, 0))
    text = chunk(b"iTXt", b"Software\0\0\0\0\0matplotlib")
    image = checked_png(SIGNATURE + ihdr + text + idats + chunk(b"IEND", b""), max_pixels=10**6)
    assert (image.width, image.height) == (9, 3000)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (png(10, 10, bytes(50)), "not the 110"),  # too little data
        (png(2, 2, bytes(6))[:-10], "truncated"),
        (png(2, 2, bytes(6)).replace(b"IEND", b"IENX"), "bad CRC"),
        (png(2, 2, bytes(6), after_end=b"junk after the end!"), "after its end|truncated"),
        (png(2, 2, bytes(6), before_idat=chunk(b"acTL", bytes(8))), "animated"),
        (png(2, 2, bytes(6), before_idat=chunk(b"XyZW", b"")), "unknown critical chunk"),
        (png(2, 2, bytes(6), interlace=1), "interlaced"),
        (png(2, 2, bytes(6), colour=2, depth=4), "header is invalid"),
        (png(0, 5, b""), "no pixels"),
        (SIGNATURE + chunk(b"IDAT", b""), "header is missing"),
        (b"\xff\xd8\xff\xe0 a jpeg", "not a PNG"),
        (png(2, 2, bytes(6)).replace(zlib.compress(bytes(6), 1), b"\x78\x01corrupt"), "bad CRC|corrupt"),
        # sound in size, yet no decoder could read them
        (png(4, 4, b"\x09" * 20), "row filter PNG lacks"),
        (png(4, 4, bytes(15) + b"\x05" + bytes(4)), "row filter PNG lacks"),  # the last row only
        (png(4, 4, bytes(20), before_idat=chunk(b"zTXt", b"k\0\0" + zlib.compress(bytes(1 << 21)))), r"compressed metadata \(zTXt\)"),
        (png(4, 4, bytes(20), before_idat=chunk(b"iCCP", b"p\0\0" + zlib.compress(bytes(1 << 21)))), r"compressed metadata \(iCCP\)"),
        (png(4, 4, bytes(20), before_idat=chunk(b"iTXt", b"k\0\1\0\0\0" + zlib.compress(b"x"))), r"compressed metadata \(iTXt\)"),
    ],
    ids=["short data", "truncated", "bad crc", "after IEND", "animated", "unknown chunk", "interlaced",
         "bad depth", "no pixels", "no IHDR", "jpeg", "corrupt zlib", "unknown filter", "unknown filter, last row",
         "zTXt", "iCCP", "compressed iTXt"],
)  # fmt: skip
def test_broken_pngs_are_refused_with_a_reason(data, reason):
    with pytest.raises(ValueError, match=reason):
        checked_png(data, max_pixels=10_000)


# -- the cap every decode obeys (llmi.image) ---------------------------------------------------


def _bomb(side: int = 8000) -> bytes:
    """A real, valid PNG of side x side grey pixels (64 MP): about 60 kB of zeros compressed."""
    return png(side, side, bytes((side + 1) * side))


def test_image_data_refuses_an_oversized_image_from_its_header():
    assert 8000 * 8000 > MAX_PIXELS
    with pytest.raises(ValueError, match="8000x8000 pixels is over the 50,000,000-pixel limit"):
        ImageData.from_bytes(_bomb())
    # even when the caller lied about its size, decoding checks the header first
    lying = ImageData(data=_bomb(), width=8, height=8)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="over the"):
            lying.to_pil()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20
    assert ImageData.from_bytes(_bomb(100)).width == 100


def test_an_edit_of_an_oversized_image_fails_cleanly():
    """What the issue saw: a huge chart edited three times. Now the edit is a failed image."""
    from llmi.engine import Engine
    from llmi.tags import ImageRequest, serialise
    from llmi.tools.classical.editor import ClassicalEdit

    lying = ImageData(data=_bomb(), width=8, height=8)
    text = serialise(ImageRequest("edit", "flip it", {"img_index": 0, "prompt": "flip it horizontally"}))
    with Engine({"edit": ClassicalEdit()}) as engine:
        doc = engine.run(text, [lying])
    segment = doc.image_segments[0]
    assert segment.status == "failed" and "over the 50,000,000-pixel limit" in segment.error
