"""The llmi side's check of a chart the sandbox sends back: the job's word counts for nothing.

``checked_png`` walks the PNG's chunks itself, without an image library: the signature, an
``IHDR`` whose dimensions are within the pixel cap *before* anything is decompressed, a valid
colour type and bit depth, every chunk's CRC, no animation, no compressed metadata (``zTXt``,
``iCCP``, compressed ``iTXt``: a chart has none, and an image library would refuse one that
inflates past its own cap), and ``IEND`` last with nothing after it. It then inflates the image
data in bounded steps and requires exactly the number of bytes those dimensions call for, each
row starting with a filter type PNG defines, so a lying header, a truncated or undecodable image
or a decompression bomb costs at most one step of memory. The result's size comes from this
check, not from the job.

>>> import zlib
>>> def chunk(kind, data):
...     crc = struct.pack(">I", zlib.crc32(kind + data))
...     return struct.pack(">I", len(data)) + kind + data + crc
>>> ihdr = struct.pack(">IIBBBBB", 2, 1, 8, 0, 0, 0, 0)  # 2x1, 8-bit grey
>>> idat = zlib.compress(b"\\0\\x10\\x20")  # one row: its filter byte, two pixels
>>> png = SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
>>> image = checked_png(png, max_pixels=10)
>>> (image.width, image.height, image.format)
(2, 1, 'png')
>>> checked_png(png, max_pixels=1)
Traceback (most recent call last):
...
ValueError: the chart is 2x1 pixels, over the limit of 1 pixels
"""

from __future__ import annotations

import struct
import zlib

from ...image import ImageData

__all__ = ["SIGNATURE", "checked_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour type -> (channels, allowed bit depths)
_COLOUR = {0: (1, {1, 2, 4, 8, 16}), 2: (3, {8, 16}), 3: (1, {1, 2, 4, 8}), 4: (2, {8, 16}),
           6: (4, {8, 16})}  # fmt: skip
_ANIMATION = {b"acTL", b"fcTL", b"fdAT"}
_KNOWN_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
_COMPRESSED_METADATA = {b"zTXt", b"iCCP"}
_MAX_FILTER = 4  # None, Sub, Up, Average, Paeth
_STEP = 1 << 20  # bytes inflated at a time


def checked_png(data: bytes, max_pixels: int) -> ImageData:
    """``data`` as an ``ImageData`` if it is one sound, still PNG within ``max_pixels``; else
    ``ValueError`` saying what is wrong."""
    if not data.startswith(SIGNATURE):
        raise ValueError("the chart is not a PNG")
    width, height, row, rest = _header(data, max_pixels)
    expected = height * row
    inflater = zlib.decompressobj()
    produced = 0
    seen_end = False
    for kind, body in rest:
        if seen_end:
            raise ValueError("the chart has data after its end")
        if kind == b"IEND":
            seen_end = True
        elif kind in _ANIMATION:
            raise ValueError("the chart is an animated PNG")
        elif kind == b"IDAT":
            produced += _inflate(inflater, body, expected - produced, row, produced)
        elif kind in _COMPRESSED_METADATA or (kind == b"iTXt" and _compressed_text(body)):
            raise ValueError(f"the chart has compressed metadata ({kind.decode()})")
        elif kind not in _KNOWN_CRITICAL and kind[:1].isupper():
            raise ValueError(f"the chart has an unknown critical chunk {kind!r}")
    if not seen_end:
        raise ValueError("the chart is truncated (no IEND)")
    if produced != expected or not inflater.eof or inflater.unused_data:
        raise ValueError(
            f"the chart's image data is {produced:,} bytes, not the {expected:,} its size needs"
        )
    return ImageData(data=data, width=width, height=height, format="png")


def _header(data: bytes, max_pixels: int):
    chunks = _chunks(data)
    first = next(chunks, None)
    if first is None or first[0] != b"IHDR" or len(first[1]) != 13:
        raise ValueError("the chart's PNG header is missing or malformed")
    fields = struct.unpack(">IIBBBBB", first[1])
    width, height, depth, colour, compression, filtering, interlace = fields
    if width == 0 or height == 0:
        raise ValueError("the chart has no pixels")
    if width * height > max_pixels:
        raise ValueError(
            f"the chart is {width}x{height} pixels, over the limit of {max_pixels:,} pixels"
        )
    channels, depths = _COLOUR.get(colour, (0, set()))
    if depth not in depths or compression or filtering:
        raise ValueError(f"the chart's PNG header is invalid (colour type {colour}, depth {depth})")
    if interlace:
        raise ValueError("the chart is an interlaced PNG")
    row = 1 + (width * channels * depth + 7) // 8  # a filter byte, then the pixels
    return width, height, row, chunks


def _chunks(data: bytes):
    """(type, body) of each chunk after the signature, CRCs checked."""
    at = len(SIGNATURE)
    while at < len(data):
        if at + 12 > len(data):
            raise ValueError("the chart is truncated (a partial chunk)")
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(data):
            raise ValueError("the chart is truncated (a chunk runs past the end)")
        body = data[at + 8 : end - 4]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4 : end])[0]:
            raise ValueError(f"the chart is corrupt (bad CRC in {kind!r})")
        yield kind, body
        at = end


def _compressed_text(body: bytes) -> bool:
    """Whether an ``iTXt`` chunk's text is compressed (the flag after its keyword)."""
    return body.partition(b"\0")[2][:1] not in (b"", b"\0")


def _inflate(inflater, compressed: bytes, room: int, row: int, at: int) -> int:
    """Inflate ``compressed`` a step at a time; the bytes produced (at most ``room`` + 1).

    ``at`` bytes of image data came before; every ``row``-th byte from the start must be a
    filter type PNG defines, or no decoder could read the image.
    """
    produced = 0
    pending = compressed
    try:
        while pending and not inflater.eof:
            out = inflater.decompress(pending, min(_STEP, room - produced + 1))
            if max(out[-(at + produced) % row :: row], default=0) > _MAX_FILTER:
                raise ValueError("the chart's image data is corrupt (a row filter PNG lacks)")
            produced += len(out)
            if produced > room:
                return produced  # more than the header allows: the caller refuses it
            pending = inflater.unconsumed_tail
            if not out and pending:
                break  # zlib wants more input than this chunk holds
    except zlib.error as exc:
        raise ValueError(f"the chart's image data is corrupt ({exc})") from None
    return produced
