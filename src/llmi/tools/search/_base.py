"""What the search backends share: reading the query, the call's time limit, the rule that
the first usable candidate in rank order wins, and holding nothing between calls."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

from ...errors import FetchError, NotFound, ToolTimeout
from ...image import ImageData
from ..base import ToolCall, ToolOutput

__all__ = ["SearchTool"]


class SearchTool(ABC):
    """A search backend: ``run`` reads the query and bounds the call; subclasses implement
    ``search(query)``. ``_label`` names the service in messages (``"SerpAPI"``)."""

    source: ClassVar[str] = "search"
    _label: ClassVar[str]

    async def run(self, call: ToolCall) -> ToolOutput:
        query = call.request.text.strip()
        if not query:
            raise NotFound("empty search query")
        try:
            async with asyncio.timeout(call.timeout):
                return await self.search(query)
        except TimeoutError:
            raise ToolTimeout(f"{self._label} search for {query!r} took longer than {call.timeout:g} s") from None

    @abstractmethod
    async def search(self, query: str) -> ToolOutput:
        """The backend's answer for a non-empty ``query``."""

    async def first_usable(self, urls: Iterable[str], found: str) -> tuple[ImageData, str]:
        """The first URL, in rank order, that downloads as a usable image (LLM-I's rule), through
        the backend's safe ``fetcher``; ``NotFound`` saying what was ``found`` when none is."""
        fetcher: Any = getattr(self, "fetcher")
        try:
            return await fetcher.first_valid(list(urls), getattr(self, "concurrency", 4))
        except FetchError as exc:
            raise NotFound(f"{found}, none usable: {exc}") from exc

    async def aclose(self) -> None:
        """Nothing is held between calls."""
