"""Length-prefixed frames, the one format on every pipe of the code sandbox (standard library only).

A frame is 8 bytes (the JSON header's length and the binary payload's length, both big-endian
uint32), the JSON header (an object), then the payload. The llmi process, the supervisor and
each job speak it; the side that reads a frame from a less trusted side (a job, as seen by the
supervisor) uses ``parse`` on bytes already collected, which refuses anything but exactly one
well-formed frame within the caps.

>>> header, payload = parse(encode({"ok": True}, b"png"))
>>> header, payload
({'ok': True}, b'png')
>>> try:
...     parse(encode({"ok": True}) * 2)
... except FrameError as exc:
...     print(exc)
more than one frame (20 bytes after the first)
"""

from __future__ import annotations

import json
import os
import struct

MAX_JSON = 1 << 20
MAX_BINARY = 64 << 20
_HEAD = struct.Struct(">II")


class FrameError(ValueError):
    """Bytes that are not exactly one well-formed frame."""


def encode(header: dict, payload: bytes = b"") -> bytes:
    data = json.dumps(header).encode()
    return _HEAD.pack(len(data), len(payload)) + data + payload


def write(fd: int, header: dict, payload: bytes = b"") -> None:
    view = memoryview(encode(header, payload))
    while view:
        view = view[os.write(fd, view) :]


def lengths(head: bytes) -> tuple[int, int]:
    """The two lengths of a frame's first 8 bytes; FrameError when over the caps."""
    jlen, blen = _HEAD.unpack(head)
    if jlen > MAX_JSON or blen > MAX_BINARY:
        raise FrameError(f"oversized frame ({jlen:,}-byte header, {blen:,}-byte payload)")
    return jlen, blen


def header_of(data: bytes) -> dict:
    """The JSON header of a frame; FrameError for anything but a JSON object."""
    try:
        header = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested JSON
        raise FrameError(f"malformed frame header ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise FrameError(f"malformed frame header (a JSON {type(header).__name__}, not an object)")
    return header


def parse(buf: bytes) -> tuple[dict, bytes]:
    """Exactly one complete frame held in memory, as (header, payload)."""
    if len(buf) < _HEAD.size:
        raise FrameError(f"truncated frame ({len(buf)} bytes)")
    jlen, blen = lengths(buf[: _HEAD.size])
    end = _HEAD.size + jlen + blen
    if len(buf) < end:
        raise FrameError(f"truncated frame ({len(buf):,} of {end:,} bytes)")
    if len(buf) > end:
        raise FrameError(f"more than one frame ({len(buf) - end:,} bytes after the first)")
    return header_of(buf[_HEAD.size : _HEAD.size + jlen]), buf[_HEAD.size + jlen :]


def read(fd: int) -> tuple[dict, bytes] | None:
    """One frame from a blocking pipe; None at end of file (the writer went away)."""
    head = _read_exact(fd, _HEAD.size)
    if head is None:
        return None
    jlen, blen = lengths(head)
    data = _read_exact(fd, jlen)
    payload = _read_exact(fd, blen) if blen else b""
    if data is None or payload is None:
        return None
    return header_of(data), payload


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
