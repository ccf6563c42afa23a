"""Keyless image search on Wikimedia Commons through the MediaWiki Action API.

One request per query: ``action=query`` with ``generator=search`` over the File namespace (6)
and ``prop=imageinfo`` asking for the file's URL, a rendition ``iiurlwidth`` pixels wide (1024
by default: large enough for LLM-I's 400x400 minimum, small enough to download quickly), its
MIME type, size and ``extmetadata`` (licence, author, description). Only image files are kept
(no PDFs, videos, sounds or DjVu scans). The first rendition in search rank that downloads as a
valid image wins, through ``SafeFetcher``; its licence (``LicenseShortName``, ``LicenseUrl``),
author (``Artist``, HTML stripped) and file page (``descriptionurl``) go into the ``Credit``.

Wikimedia asks API clients for a descriptive User-Agent; ``user_agent`` sets it (for the API
request and the download).

>>> tool = WikimediaSearch()   # no request is made here
>>> (tool.source, tool.backend)
('search', 'wikimedia')
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from ... import http
from ...errors import NotFound
from ...fetch import FetchPolicy, SafeFetcher
from ..base import Credit, ToolOutput
from ._base import SearchTool

__all__ = ["WikimediaSearch"]

DEFAULT_API = "https://commons.wikimedia.org/w/api.php"
USER_AGENT = "llmi/0.1 (illustrated-document image search; https://pypi.org/project/llmi/) httpx"
IMAGE_MIMES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff", "image/svg+xml"})
_SERVICE = http.Service("the Wikimedia Commons API")
_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


class WikimediaSearch(SearchTool):
    """Wikimedia Commons file search (no key)."""

    backend: str = "wikimedia"
    _label: ClassVar[str] = "Wikimedia Commons"

    def __init__(
        self,
        *,
        api_url: str = DEFAULT_API,
        fetcher: SafeFetcher | None = None,
        width: int = 1024,
        min_size: int = 400,
        max_results: int = 12,
        concurrency: int = 4,
        timeout: float = 20.0,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.api_url = api_url
        self.user_agent = user_agent
        self.fetcher = fetcher or SafeFetcher(
            FetchPolicy(min_width=min_size, min_height=min_size, user_agent=user_agent)
        )
        self.width = width
        self.max_results = max_results
        self.concurrency = concurrency
        self.timeout = timeout

    @classmethod
    def configured(cls, env: Mapping[str, str]) -> str | None:  # noqa: ARG003 - keyless
        return "Wikimedia Commons (keyless)"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "WikimediaSearch":
        """``LLMI_WIKIMEDIA_API`` for another endpoint (a mirror, a test server)."""
        return cls(api_url=env.get("LLMI_WIKIMEDIA_API") or DEFAULT_API)

    async def search(self, query: str) -> ToolOutput:
        files = await self._search(query)  # 1. ranked image files with metadata
        candidates = {f["candidate"]: f for f in files}
        image, url = await self.first_usable(candidates, f"Wikimedia Commons found {len(files)} files for {query!r}")  # 2.
        chosen = candidates[url]
        info = {"query": query, "rank": chosen["rank"], "file": chosen["title"], "mime": chosen["mime"]}
        return ToolOutput(image=image, credit=chosen["credit"], info=info)

    # -- stages -------------------------------------------------------------------------------

    def _params(self, query: str) -> dict[str, str]:
        return {
            "action": "query",
            "format": "json",
            "formatversion": "2",
            "generator": "search",
            "gsrsearch": query,
            "gsrnamespace": "6",
            "gsrlimit": str(self.max_results),
            "prop": "imageinfo",
            "iiprop": "url|extmetadata|mime|size",
            "iiurlwidth": str(self.width),
            "iiextmetadatafilter": "LicenseShortName|LicenseUrl|Artist|ObjectName|ImageDescription|Credit",
            "iiextmetadatalanguage": "en",
        }

    async def _search(self, query: str) -> list[dict[str, Any]]:
        headers = {"User-Agent": self.user_agent}
        answer = await http.request(_SERVICE, "GET", self.api_url, params=self._params(query), headers=headers, timeout=self.timeout)
        body = answer.json()  # MediaWiki reports errors as a 200 with {"error": {code, info}}
        pages = (body.get("query") or {}).get("pages")
        if isinstance(pages, dict):  # formatversion=1 keys pages by id
            pages = list(pages.values())
        files = [f for f in (self._file(p) for p in pages or [] if isinstance(p, dict)) if f is not None]
        if not files:
            raise NotFound(f"Wikimedia Commons has no image files matching {query!r}")
        files.sort(key=lambda f: f["rank"])
        return files

    @staticmethod
    def _file(page: dict[str, Any]) -> dict[str, Any] | None:
        infos = page.get("imageinfo") or []
        if not infos or not isinstance(infos[0], dict):
            return None
        info = infos[0]
        mime = str(info.get("mime") or "")
        if mime not in IMAGE_MIMES:
            return None
        candidate = info.get("thumburl") or info.get("url")
        if not isinstance(candidate, str):
            return None
        meta = info.get("extmetadata") or {}
        title = str(page.get("title") or "")
        credit = Credit(
            source="Wikimedia Commons",
            title=_meta(meta, "ObjectName") or title.removeprefix("File:").rsplit(".", 1)[0] or None,
            page_url=info.get("descriptionurl"),
            image_url=info.get("url"),
            author=_meta(meta, "Artist"),
            licence=_meta(meta, "LicenseShortName"),
            licence_url=_meta(meta, "LicenseUrl"),
        )
        rank = page.get("index") if isinstance(page.get("index"), int) else 10_000
        return {"candidate": candidate, "rank": rank, "title": title, "mime": mime, "credit": credit}


def _meta(meta: dict[str, Any], key: str) -> str | None:
    entry = meta.get(key)
    value = entry.get("value") if isinstance(entry, dict) else None
    if not isinstance(value, str):
        return None
    return strip_html(value) or None


def strip_html(text: str) -> str:
    """Plain text from the HTML Commons puts in ``Artist`` and descriptions.

    >>> strip_html('<a href="//commons.wikimedia.org/wiki/User:X" title="User:X">X&amp;Y</a>\\n (talk)')
    'X&Y (talk)'
    """
    return _SPACE.sub(" ", html.unescape(_TAGS.sub(" ", text))).strip()
