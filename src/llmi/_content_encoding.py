"""HTTP content encodings undone a bounded step at a time (for ``llmi.fetch``).

``httpx`` decodes each network chunk in one call, so a small gzip-of-gzip body can expand to
gigabytes before any size check runs. ``ContentDecoder`` instead pulls decoded bytes through the
chain of decoders ``step`` bytes at a time: each stage holds at most one step of input and
produces at most one step of output per call, so memory stays bounded whatever the ratio and
the caller can stop the moment its cap is passed. ``budget`` bounds the work too: the bytes
every stage produces, counted together (an inner stage can swallow what an outer one makes —
empty deflate blocks — so the final output alone would not bound it).

>>> import gzip
>>> body = gzip.compress(gzip.compress(b"x" * 100_000))
>>> decoder = ContentDecoder("gzip, gzip", step=4096)
>>> pieces = list(decoder.feed(body))
>>> sum(map(len, pieces)), max(map(len, pieces))
(100000, 4096)
>>> ContentDecoder("br")
Traceback (most recent call last):
...
ValueError: unsupported content encoding 'br'
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

__all__ = ["MAX_ENCODINGS", "ContentDecoder"]

MAX_ENCODINGS = 16
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

Pull = Callable[[int], bytes]


class _Inflater:
    """One zlib stage: ``pull(n, upstream)`` gives up to ``n`` decoded bytes, b"" when dry."""

    def __init__(self, coding: str, meter: _Meter) -> None:
        self.coding = coding
        self.z = zlib.decompressobj(_WBITS[coding])
        self.pending = b""
        self.started = False
        self.meter = meter

    def pull(self, n: int, upstream: Pull) -> bytes:
        while not self.z.eof:  # after the end of the stream, anything more is ignored
            if self.pending:
                try:
                    out = self.z.decompress(self.pending, n)
                except zlib.error:
                    if self.coding == "deflate" and not self.started:
                        # "deflate" without its zlib wrapper, as some servers send it
                        self.z, self.started = zlib.decompressobj(-zlib.MAX_WBITS), True
                        continue
                    raise ValueError(f"the body's {self.coding} encoding is corrupt") from None
                self.started = True
                self.pending = self.z.unconsumed_tail
                if out:
                    self.meter.count(len(out))
                    return out
                if self.pending:
                    continue
            self.pending = upstream(n)
            if not self.pending:
                return b""
        return b""


class _Meter:
    def __init__(self, budget: int | None) -> None:
        self.budget, self.used = budget, 0

    def count(self, n: int) -> None:
        self.used += n
        if self.budget is not None and self.used > self.budget:
            raise ValueError(f"the body's encodings expand to more than {self.budget:,} bytes of work")


class ContentDecoder:
    """Undoes ``Content-Encoding`` (one header value or several) in steps of ``step`` bytes.

    Supports ``identity``, ``gzip``/``x-gzip`` and ``deflate``, stacked up to
    ``MAX_ENCODINGS`` deep; anything else raises ``ValueError`` at construction. ``budget``
    (bytes produced by all stages together) raises ``ValueError`` when passed.
    """

    def __init__(self, encoding: str | list[str] | None, step: int = 1 << 16, budget: int | None = None) -> None:
        values = [encoding] if isinstance(encoding, str) else list(encoding or [])
        codings = [c.strip().lower() for v in values for c in v.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        for coding in codings:
            if coding not in _WBITS:
                raise ValueError(f"unsupported content encoding {coding!r}")
        if len(codings) > MAX_ENCODINGS:
            raise ValueError(f"{len(codings)} content encodings stacked (at most {MAX_ENCODINGS})")
        # the coding applied last is undone first
        meter = _Meter(budget)
        self.stages = [_Inflater(c, meter) for c in reversed(codings)]
        self.step = step
        self._raw = b""

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """The decoded bytes ``raw`` yields, as pieces of at most ``step`` bytes."""
        if not self.stages:
            for at in range(0, len(raw), self.step):
                yield raw[at : at + self.step]
            return
        self._raw = raw
        upstream: Pull = self._take_raw
        for stage in self.stages[:-1]:
            upstream = _chained(stage, upstream)
        last = self.stages[-1]
        while out := last.pull(self.step, upstream):
            yield out

    def _take_raw(self, n: int) -> bytes:
        data, self._raw = self._raw[:n], self._raw[n:]
        return data


def _chained(stage: _Inflater, upstream: Pull) -> Pull:
    return lambda n: stage.pull(n, upstream)
