"""The engine's content-addressed cache of tool outcomes.

A call is addressed by what determines its result: the tool, the backend, the params after
normalisation (whitespace, and case for search queries), and for an edit the bytes of the image
it edits. Identical searches or identical chart code in a GRPO group of rollouts are therefore
made once. Permanent failures are cached too (the same chart code raises the same error);
transient ones never are.

>>> from llmi.tags import ImageRequest
>>> a = cache_key("library", ImageRequest("search", "d", {"query": "Eiffel  Tower"}))
>>> a == cache_key("library", ImageRequest("search", "other", {"query": "eiffel tower"}))
True
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any, Mapping

from .errors import ToolError
from .image import ImageData
from .sources import SOURCE_TABLE
from .tags import ImageRequest
from .tools.base import ToolOutput

__all__ = ["MemoryCache", "cache_key", "normalise_params"]


class MemoryCache:
    """A bounded, thread-safe LRU of tool outcomes keyed by ``cache_key``."""

    def __init__(self, max_items: int = 1024) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, ToolOutput | ToolError] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> ToolOutput | ToolError | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: ToolOutput | ToolError) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def normalise_params(source: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Params with differences that cannot change the picture removed, as the source table
    says for each param (``llmi.sources.Param.key``).

    >>> normalise_params("code", {"code": "x = 1   \\n\\n"})
    {'code': 'x = 1'}
    """
    spec = SOURCE_TABLE.get(source)
    roles = {p.name: p.key for p in spec.params} if spec is not None else {}
    out: dict[str, Any] = {}
    for key, value in params.items():
        role = roles.get(key, "text")
        if role == "none":
            continue
        if isinstance(value, str):
            if role == "code":
                lines = value.replace("\r\n", "\n").split("\n")
                value = "\n".join(line.rstrip() for line in lines).strip("\n")
            else:
                value = " ".join(value.split())
                if role == "folded":
                    value = value.casefold()
        out[key] = value
    return out


def cache_key(backend: str, request: ImageRequest, source_image: ImageData | None = None) -> str:
    """The content address of one tool call."""
    payload = {
        "source": request.source,
        "backend": backend,
        "params": normalise_params(request.source, request.params),
        "image": source_image.sha256 if source_image is not None else None,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()
