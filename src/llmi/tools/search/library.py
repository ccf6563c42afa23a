"""Offline image search over the local image library (``llmi library add ...``).

The query is embedded with MiniLM and matched against the library's captions; the best match
must reach ``threshold`` (cosine similarity, 0.5 by default: on the Debian clip-art library,
present concepts score about 0.6-0.9 and absent ones under about 0.4), else ``NotFound`` so the
engine's fallback policy can act. SVGs are rendered to PNG (cached). The file path, caption,
author and licence are recorded in the ``Credit``.

>>> tool = LibrarySearch("/tmp/no-such-library")   # nothing is loaded here
>>> (tool.source, tool.backend)
('search', 'library')
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import ClassVar

from ...env import env_number
from ...errors import ConfigError, NotFound, ToolError, ToolNotConfigured
from ...library import Library, default_home
from ..base import Credit, ToolCall, ToolOutput
from ._base import SearchTool

__all__ = ["LibrarySearch"]

#: the images the current call's document already shows (``ToolCall.avoid``), for ``search``,
#: which the shared ``SearchTool.run`` calls with the query alone; one value per asyncio task
_AVOID: ContextVar[frozenset[str]] = ContextVar("llmi_library_avoid", default=frozenset())


class LibrarySearch(SearchTool):
    """Search the local library; ``library`` (or ``home``) picks which one."""

    backend: str = "library"
    _label: ClassVar[str] = "library"
    #: honours ``ToolCall.avoid``: a repeated query gets the next distinct match
    offers_alternatives: ClassVar[bool] = True

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        library: Library | None = None,
        threshold: float | None = None,
    ) -> None:
        self.library = library or Library(home)
        if threshold is not None:
            self.library.threshold = threshold

    @classmethod
    def configured(cls, env: Mapping[str, str]) -> str | None:
        return "offline: the local image library is indexed" if _indexed(default_home(env)) else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "LibrarySearch":
        """The library at ``LLMI_LIBRARY_HOME`` (else ``$LLMI_HOME/library``, else the user's
        data folder), which must be indexed; ``LLMI_LIBRARY_THRESHOLD`` (0.5)."""
        home = default_home(env)
        if not _indexed(home):
            raise ConfigError(_empty(home))
        return cls(home, threshold=env_number(env, "LLMI_LIBRARY_THRESHOLD", None, float))

    async def run(self, call: ToolCall) -> ToolOutput:
        token = _AVOID.set(call.avoid)
        try:
            return await super().run(call)
        finally:
            _AVOID.reset(token)

    async def search(self, query: str) -> ToolOutput:
        # embedding and rendering are CPU work: keep them off the event loop
        hit, image, skipped = await asyncio.to_thread(self._find, query, _AVOID.get())
        item = hit.item
        credit = Credit(
            source="Local image library",
            title=item.title,
            page_url=None,
            image_url=Path(item.path).as_uri(),
            author=item.author,
            licence=item.licence,
            licence_url=item.licence_url,
        )
        info = {"query": query, "score": round(hit.score, 4), "caption": item.caption, "path": item.path}
        if skipped:
            info["skipped_repeats"] = skipped  # better matches already shown in this document
        return ToolOutput(image=image, credit=credit, info=info)

    def _find(self, query: str, avoid: frozenset[str]):
        if not self.library.exists():
            raise ToolNotConfigured(_empty(self.library.home))
        try:
            hits = self.library.matches(query, candidates=5 + 2 * len(avoid))
            for skipped, hit in enumerate(hits):
                image = self.library.image(hit.item)
                if image.sha256 not in avoid:
                    return hit, image, skipped
            raise NotFound(
                f"every library image that matches {query!r} ({len(hits)}) is already in the document"
            )
        except ToolError:
            raise
        except Exception as exc:
            raise ToolNotConfigured(f"the local image library could not be searched ({type(exc).__name__}: {exc})") from exc

    async def warm_up(self) -> None:
        """Map the index and load the encoder in the background (the engine calls this when a
        document starts, so the first search does not pay for it)."""
        await asyncio.to_thread(self.library.warm_up)


def _empty(home: Path) -> str:
    return (
        f"the local image library at {home} is empty: run `llmi library add --defaults` "
        "(Debian clip art) or `llmi library add FOLDER`"
    )


def _indexed(home: Path) -> bool:
    try:
        return Library(home).exists()
    except Exception:  # noqa: BLE001 - an unreadable index is "no library" for auto
        return False
