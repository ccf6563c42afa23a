"""Which search backend the environment asks for.

``LLMI_SEARCH_BACKEND`` picks one: ``auto`` (default), ``serpapi``, ``wikimedia``, ``library``
or ``none``. A named backend that is not configured is a ``ConfigError`` (asking for SerpAPI
without ``SERP_API_KEY`` should not quietly give you something else).

``auto`` takes, in order: SerpAPI Google Images when ``SERP_API_KEY`` is set (LLM-I's variable);
Wikimedia Commons when ``LLMI_ONLINE=1`` (the network is never probed to decide: a probe costs
time at every start and lies on flaky networks, so going online is an explicit switch); the
local image library when its index exists (``llmi library add --defaults``); else nothing, and
the engine reports how to configure search on each image that needed it.

Other variables: ``LLMI_HOME`` / ``LLMI_LIBRARY_HOME`` (where the library lives),
``LLMI_LIBRARY_THRESHOLD`` (similarity needed, default 0.5), ``LLMI_SERPAPI_URL`` and
``LLMI_WIKIMEDIA_API`` (other endpoints, e.g. a mirror or a test server).

The backend's name is the tool's ``backend`` attribute; the engine records it on every image.

>>> search_choice({"SERP_API_KEY": "k"})
Choice(backend='serpapi', reason='SERP_API_KEY is set')
>>> search_choice({"LLMI_ONLINE": "1"}).backend
'wikimedia'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...errors import ConfigError
from ..base import Tool

__all__ = ["Choice", "search_choice", "search_from_env"]

_NAMES = ("auto", "serpapi", "wikimedia", "library", "none")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Choice:
    """The backend picked (``None``: none) and why."""

    backend: str | None
    reason: str


def _library_exists(env: Mapping[str, str]) -> bool:
    from ...library import Library, default_home

    try:
        return Library(default_home(env)).exists()
    except Exception:  # noqa: BLE001 - an unreadable index is "no library" for auto
        return False


def search_choice(env: Mapping[str, str]) -> Choice:
    """Which search backend ``env`` selects (nothing is constructed, nothing is fetched)."""
    name = (env.get("LLMI_SEARCH_BACKEND") or "auto").strip().lower()
    if name not in _NAMES:
        raise ConfigError(f"LLMI_SEARCH_BACKEND={name!r} is not one of {', '.join(_NAMES)}")
    if name == "none":
        return Choice(None, "LLMI_SEARCH_BACKEND=none")
    if name == "serpapi":
        if not env.get("SERP_API_KEY"):
            raise ConfigError("LLMI_SEARCH_BACKEND=serpapi needs SERP_API_KEY")
        return Choice("serpapi", "LLMI_SEARCH_BACKEND=serpapi")
    if name == "wikimedia":
        return Choice("wikimedia", "LLMI_SEARCH_BACKEND=wikimedia")
    if name == "library":
        if not _library_exists(env):
            raise ConfigError("LLMI_SEARCH_BACKEND=library but the library is empty: run `llmi library add --defaults`")
        return Choice("library", "LLMI_SEARCH_BACKEND=library")
    if env.get("SERP_API_KEY"):
        return Choice("serpapi", "SERP_API_KEY is set")
    if (env.get("LLMI_ONLINE") or "").strip().lower() in _TRUE:
        return Choice("wikimedia", "LLMI_ONLINE=1 and no SERP_API_KEY")
    if _library_exists(env):
        return Choice("library", "offline: the local image library is indexed")
    return Choice(None, "no SERP_API_KEY, LLMI_ONLINE unset, and no local library indexed")


def search_from_env(env: Mapping[str, str]) -> Tool | None:
    """The search tool ``env`` configures, or ``None``."""
    choice = search_choice(env)
    if choice.backend == "serpapi":
        from .serpapi import DEFAULT_URL, SerpApiSearch

        return SerpApiSearch(env["SERP_API_KEY"], base_url=env.get("LLMI_SERPAPI_URL") or DEFAULT_URL)
    if choice.backend == "wikimedia":
        from .wikimedia import DEFAULT_API, WikimediaSearch

        return WikimediaSearch(api_url=env.get("LLMI_WIKIMEDIA_API") or DEFAULT_API)
    if choice.backend == "library":
        from ...library import default_home
        from .library import LibrarySearch

        raw = env.get("LLMI_LIBRARY_THRESHOLD")
        try:
            threshold = float(raw) if raw else None
        except ValueError:
            raise ConfigError(f"LLMI_LIBRARY_THRESHOLD={raw!r} is not a number") from None
        return LibrarySearch(default_home(env), threshold=threshold)
    return None
