"""The local image library: an offline, captioned image collection searched by meaning.

``captions`` reads what each file says about itself, ``embed`` turns captions into MiniLM
vectors, ``store`` keeps the persistent index and answers queries, ``render`` draws SVGs.
The search tool backed by it is ``llmi.tools.search.library.LibrarySearch``; the command line
is ``llmi library``.
"""

from __future__ import annotations

from .store import (
    DEFAULT_SOURCES,
    AddReport,
    Library,
    LibraryHit,
    LibraryItem,
    LibraryStats,
    default_home,
)

__all__ = ["DEFAULT_SOURCES", "AddReport", "Library", "LibraryHit", "LibraryItem", "LibraryStats", "default_home"]
