"""Image search through SerpAPI's Google Images engine (``SERP_API_KEY``, as in LLM-I).

One request per query to ``GET {base_url}?engine=google_images&q=...&api_key=...``; the
``images_results`` come back ranked. For each result the full-size ``original`` URL is tried
first and the ``thumbnail`` after it; the first candidate that downloads as a valid image of at
least ``min_size`` pixels a side (LLM-I keeps images of at least 400x400) wins, through
``SafeFetcher``. The source page (``link``) and ``title`` of the winning result are recorded.

Errors are reported so a user knows what to change (classified by :mod:`llmi.http`): a
rejected key (HTTP 401, "Invalid API key": check ``SERP_API_KEY``), an exhausted plan (HTTP
429, "run out of searches": not transient), a rate limit (429: transient), no results
(``NotFound``, so the engine's fallback can act).

>>> tool = SerpApiSearch("my-key")   # no request is made here
>>> (tool.source, tool.backend)
('search', 'serpapi')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ... import http
from ...errors import ConfigError, NotFound
from ...fetch import FetchPolicy, SafeFetcher
from ..base import Credit, ToolOutput
from ._base import SearchTool

__all__ = ["SerpApiSearch"]

DEFAULT_URL = "https://serpapi.com/search.json"
_CREDIT_SOURCE = "Google Images (SerpAPI)"
_SERVICE = http.Service("SerpAPI", key_hint="SERP_API_KEY (https://serpapi.com/manage-api-key)")


class SerpApiSearch(SearchTool):
    """Google Images through SerpAPI.

    ``params`` adds engine parameters (``hl``, ``gl``, ``safe`` ...); ``max_results`` caps how
    many ranked results are tried; ``concurrency`` how many downloads run at once.
    """

    backend: str = "serpapi"
    _label: ClassVar[str] = "SerpAPI"

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

    @classmethod
    def configured(cls, env: Mapping[str, str]) -> str | None:
        return "SERP_API_KEY is set" if (env.get("SERP_API_KEY") or "").strip() else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "SerpApiSearch":
        """``SERP_API_KEY`` (required); ``LLMI_SERPAPI_URL`` for another endpoint."""
        return cls((env.get("SERP_API_KEY") or "").strip(), base_url=env.get("LLMI_SERPAPI_URL") or DEFAULT_URL)

    def __repr__(self) -> str:  # never show the key
        return f"SerpApiSearch(base_url={self.base_url!r})"

    async def search(self, query: str) -> ToolOutput:
        results = await self._search(query)  # 1. ask SerpAPI
        candidates = self._candidates(results)  # 2. rank URLs: original, then thumbnail
        image, url = await self.first_usable(candidates, f"Google Images found {len(results)} results for {query!r}")  # 3.
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

    # -- stages -------------------------------------------------------------------------------

    async def _search(self, query: str) -> list[dict[str, Any]]:
        params = {"engine": "google_images", "q": query, **self.params, "api_key": self._api_key}
        # errors (a refused key, an exhausted plan, rate limits) are classified by llmi.http;
        # SerpAPI reports "no results" as a 200 with an "error" text, which is ours to read
        answer = await http.request(_SERVICE, "GET", self.base_url, params=params, timeout=self.timeout)
        body = answer.json(error_in_body=False)
        results = [r for r in body.get("images_results") or [] if isinstance(r, dict)]
        if not results:
            error = str(body.get("error") or "")
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
