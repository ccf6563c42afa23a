"""Image search through SerpAPI's Google Images engine (``SERP_API_KEY``, as in LLM-I).

One request per query to ``GET {base_url}?engine=google_images&q=...&api_key=...``; the
``images_results`` come back ranked. For each result the full-size ``original`` URL is tried
first and the ``thumbnail`` after it; the first candidate that downloads as a valid image of at
least ``min_size`` pixels a side (LLM-I keeps images of at least 400x400) wins, through
``SafeFetcher``. The source page (``link``) and ``title`` of the winning result are recorded.

Errors are reported so a user knows what to change: a rejected key (HTTP 401, "Invalid API
key"), an exhausted plan (HTTP 429, "run out of searches"), no results (``NotFound``, so the
engine's fallback can act).

>>> tool = SerpApiSearch("my-key")   # no request is made here
>>> (tool.source, tool.backend)
('search', 'serpapi')
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ...errors import BackendError, ConfigError, FetchError, NotFound, ToolTimeout
from ...fetch import FetchPolicy, SafeFetcher
from ..base import Credit, ToolCall, ToolOutput

__all__ = ["SerpApiSearch"]

DEFAULT_URL = "https://serpapi.com/search.json"
_CREDIT_SOURCE = "Google Images (SerpAPI)"


class SerpApiSearch:
    """Google Images through SerpAPI.

    ``params`` adds engine parameters (``hl``, ``gl``, ``safe`` ...); ``max_results`` caps how
    many ranked results are tried; ``concurrency`` how many downloads run at once.
    """

    source: ClassVar[str] = "search"
    backend: str = "serpapi"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_URL,
        fetcher: SafeFetcher | None = None,
        min_size: int = 400,
        max_results: int = 20,
        concurrency: int = 4,
        timeout: float = 20.0,
        params: Mapping[str, str] | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError("SerpAPI needs an API key: set SERP_API_KEY (https://serpapi.com/manage-api-key)")
        self._api_key = api_key
        self.base_url = base_url
        self.fetcher = fetcher or SafeFetcher(FetchPolicy(min_width=min_size, min_height=min_size))
        self.max_results = max_results
        self.concurrency = concurrency
        self.timeout = timeout
        self.params = dict(params or {})

    def __repr__(self) -> str:  # never show the key
        return f"SerpApiSearch(base_url={self.base_url!r})"

    async def run(self, call: ToolCall) -> ToolOutput:
        query = call.request.text.strip()
        if not query:
            raise NotFound("empty search query")
        try:
            async with asyncio.timeout(call.timeout):
                results = await self._search(query)  # 1. ask SerpAPI
                candidates = self._candidates(results)  # 2. rank URLs: original, then thumbnail
                try:
                    image, url = await self.fetcher.first_valid(list(candidates), self.concurrency)  # 3.
                except FetchError as exc:
                    raise NotFound(f"Google Images found {len(results)} results for {query!r}, none usable: {exc}") from exc
        except TimeoutError:
            raise ToolTimeout(f"SerpAPI search for {query!r} took longer than {call.timeout:g} s") from None
        rank, result = candidates[url]
        credit = Credit(
            source=_CREDIT_SOURCE,
            title=_text(result.get("title")),
            page_url=_text(result.get("link")),
            image_url=url,
            author=_text(result.get("source")),
        )
        info = {"query": query, "rank": rank, "candidates": len(candidates),
                "used": "original" if url == result.get("original") else "thumbnail"}
        return ToolOutput(image=image, credit=credit, info=info)

    async def aclose(self) -> None:
        """Nothing is held between calls."""

    # -- stages -------------------------------------------------------------------------------

    async def _search(self, query: str) -> list[dict[str, Any]]:
        params = {"engine": "google_images", "q": query, **self.params, "api_key": self._api_key}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.base_url, params=params)
        except httpx.TimeoutException:
            raise BackendError(f"SerpAPI did not answer within {self.timeout:g} s", transient=True) from None
        except httpx.HTTPError as exc:
            raise BackendError(f"SerpAPI unreachable ({type(exc).__name__}: {exc})", transient=True) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = str(body.get("error") or "")
        status = response.status_code
        lowered = error.lower()
        if status == 401 or "invalid api key" in lowered or "api key" in lowered and status >= 400:
            raise BackendError(f"SerpAPI rejected the API key (HTTP {status}: {error or 'unauthorised'}); check SERP_API_KEY")
        if "run out of searches" in lowered or (status == 429 and "throughput" not in lowered):
            raise BackendError(f"SerpAPI quota exhausted (HTTP {status}: {error or 'too many requests'}); upgrade the plan or wait")
        if status == 429:
            raise BackendError(f"SerpAPI rate limit (HTTP 429: {error})", transient=True)
        if status >= 500:
            raise BackendError(f"SerpAPI server error (HTTP {status}: {error or response.reason_phrase})", transient=True)
        if status >= 400:
            raise BackendError(f"SerpAPI refused the request (HTTP {status}: {error or response.reason_phrase})")
        results = [r for r in body.get("images_results") or [] if isinstance(r, dict)]
        if not results:
            raise NotFound(f"Google Images returned no results for {query!r}" + (f" ({error})" if error else ""))
        return results[: self.max_results]

    @staticmethod
    def _candidates(results: list[dict[str, Any]]) -> dict[str, tuple[int, dict[str, Any]]]:
        """Candidate URL -> (rank, result), in rank order; each result's original before its thumbnail."""
        out: dict[str, tuple[int, dict[str, Any]]] = {}
        for i, result in enumerate(results):
            rank = result.get("position") if isinstance(result.get("position"), int) else i + 1
            for key in ("original", "thumbnail"):
                url = result.get(key)
                if isinstance(url, str) and url.startswith(("http://", "https://")) and url not in out:
                    out[url] = (rank, result)
        if not out:
            raise NotFound("Google Images results carried no image URLs")
        return out


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
