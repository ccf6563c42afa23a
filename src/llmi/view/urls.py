"""The viewer's addresses: one per document, run, item, comparison, training run and step.

Entries are addressed by their folder's path relative to the viewed root; item keys and other
free text travel in the query string, never in the path, because browsers rewrite ``.`` and
``..`` segments (even percent-encoded ones) before a request is sent.

>>> doc("out/a b"), item("runs/r1", "../x"), image("d", tag=0), compare("r1", "r2", key="7")
('/doc/out/a%20b', '/item/runs/r1?key=..%2Fx', '/img/d?tag=0', '/compare/item?a=r1&b=r2&key=7')
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["compare", "doc", "eval_run", "image", "item", "query", "static", "step", "training"]


def _path(rel: str) -> str:
    return quote(rel, safe="/")


def query(base: str, **params: Any) -> str:
    """``base`` with the non-empty ``params`` as its query string."""
    kept = {k: v for k, v in params.items() if v is not None and v is not False and v != ""}
    return f"{base}?{urlencode(kept)}" if kept else base


def doc(rel: str) -> str:
    return f"/doc/{_path(rel)}"


def image(rel: str, *, tag: int | None = None, input: int | None = None) -> str:
    """A document's picture: the image of tag ``tag``, or input image ``input``."""
    return query(f"/img/{_path(rel)}", tag=tag, input=input)


def eval_run(rel: str, **params: Any) -> str:
    return query(f"/eval/{_path(rel)}", **params)


def item(rel: str, key: str) -> str:
    return query(f"/item/{_path(rel)}", key=key)


def compare(a: str, b: str, *, key: str | None = None, **params: Any) -> str:
    return query("/compare/item" if key is not None else "/compare", a=a, b=b, key=key, **params)


def training(rel: str) -> str:
    return f"/train/{_path(rel)}"


def step(rel: str, number: int) -> str:
    return query(f"/train/{_path(rel)}", step=number)


def static(name: str) -> str:
    return f"/static/{quote(name)}"
