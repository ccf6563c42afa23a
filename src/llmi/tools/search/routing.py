"""Which search backend the environment asks for (see :mod:`llmi.tools.routing`, which chooses
every family the same way, and ``docs/search.md``).

``LLMI_SEARCH_BACKEND`` picks one: ``auto`` (default), ``serpapi``, ``wikimedia``, ``library``
or ``none``. ``auto`` takes, in order: SerpAPI Google Images when ``SERP_API_KEY`` is set
(LLM-I's variable); Wikimedia Commons when ``LLMI_ONLINE=1`` (the network is never probed to
decide: a probe costs time at every start and lies on flaky networks, so going online is an
explicit switch); the local image library when its index exists (``llmi library add
--defaults``); else nothing, and the engine reports how to configure search on each image that
needed it.

Other variables: ``LLMI_HOME`` / ``LLMI_LIBRARY_HOME`` (where the library lives),
``LLMI_LIBRARY_THRESHOLD`` (similarity needed, default 0.5), ``LLMI_SERPAPI_URL`` and
``LLMI_WIKIMEDIA_API`` (other endpoints, e.g. a mirror or a test server).

>>> search_choice({"SERP_API_KEY": "k"})
Choice(backend='serpapi', reason='SERP_API_KEY is set')
>>> search_choice({"LLMI_ONLINE": "1"}).backend
'wikimedia'
"""

from __future__ import annotations

from collections.abc import Mapping

from ..base import Tool
from ..routing import Choice, choose, from_env

__all__ = ["Choice", "search_choice", "search_from_env"]


def search_choice(env: Mapping[str, str]) -> Choice:
    """Which search backend ``env`` selects (nothing is constructed, nothing is fetched)."""
    return choose("search", env)


def search_from_env(env: Mapping[str, str]) -> Tool | None:
    """The search tool ``env`` configures, or ``None``."""
    return from_env("search", env)
