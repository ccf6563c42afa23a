"""Helpers for testing code that uses llmi: a latency-controlled tool for engine tests and
benchmarks. It draws a real PNG so that documents built with it render like real ones."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from .errors import BackendError, NotFound, ToolError
from .image import ImageData
from .tools.base import ToolCall, ToolOutput

__all__ = ["LatencyTool"]


@dataclass
class LatencyTool:
    """A tool that answers after ``latency`` seconds with a small solid image.

    ``fail_first`` makes the first N calls raise a transient ``BackendError``; ``fail_with``
    makes every call raise that error; ``fail_if`` makes a call fail (``NotFound``, not
    transient) when the request's text (query, prompt or code) contains it, so a test can
    script each tag's outcome in the answer itself. It counts calls and the peak number
    running at once.
    """

    source: str = "search"  # type: ignore[misc]
    latency: float = 0.05
    backend: str = "latency"
    fail_first: int = 0
    fail_with: ToolError | None = None
    fail_if: str | None = None
    calls: int = 0
    peak: int = 0
    _running: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    async def run(self, call: ToolCall) -> ToolOutput:
        with self._lock:
            self.calls += 1
            n = self.calls
            self._running += 1
            self.peak = max(self.peak, self._running)
        try:
            await asyncio.sleep(self.latency)
            if self.fail_with is not None:
                raise self.fail_with
            if self.fail_if is not None and self.fail_if in call.request.text:
                raise NotFound(f"scripted failure: the request contains {self.fail_if!r}")
            if n <= self.fail_first:
                raise BackendError(f"transient failure {n}", transient=True)
            shade = 40 + (len(call.request.text) * 37) % 200
            if call.input_image is not None:  # an "edit": darken the input a little
                shade = max(0, call.input_image.to_pil().getpixel((0, 0))[0] - 10)
            return ToolOutput(ImageData.blank(8, 8, (shade, shade, shade)), info={"call": n})
        finally:
            with self._lock:
                self._running -= 1

    async def aclose(self) -> None:
        return None
