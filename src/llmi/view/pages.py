"""Turning the viewer's values into HTML: Jinja templates that escape everything by default,
server-side syntax highlighting, and the one stylesheet.

Templates (``llmi/view/templates/``) are rendered with autoescaping on, so any text a model, a
judge, a prompt or a file name brings is escaped unless it went through one of two doors that
produce safe HTML on purpose: ``llmi.renderers.html`` (model prose: Markdown with raw HTML off,
then nh3) and ``highlight`` (Pygments escapes the code it colours). Pages carry no script at all.

>>> str(highlight("plt.title('<b>')"))[:40]
'<div class="hl"><pre><span></span><span '
>>> "&lt;b&gt;" in str(highlight("plt.title('<b>')"))
True
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import MissingDependency

__all__ = ["CSS_NAME", "highlight", "markup", "number", "render", "stylesheet", "stylesheet_version", "when"]

CSS_NAME = "view.css"
#: code longer than this is shown plain (highlighting a runaway answer would stall the page)
MAX_HIGHLIGHT = 200_000


@lru_cache(maxsize=1)
def _environment() -> Any:
    jinja2 = MissingDependency.require("jinja2", "view")
    from . import urls

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("llmi.view", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a template asking for a missing value is a bug, not ""
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(urls=urls, css=urls.static(CSS_NAME) + f"?v={stylesheet_version()}")
    env.filters["pretty_json"] = lambda value: json.dumps(value, ensure_ascii=False, indent=2, default=str)
    env.filters["num"] = number
    env.globals["when"] = when
    return env


def render(template: str, **values: Any) -> str:
    """The named template rendered with ``values``."""
    return _environment().get_template(template).render(**values)


def markup(html: str) -> Any:
    """``html`` marked as already safe: only for HTML made by the sanitiser or Pygments."""
    from markupsafe import Markup

    return Markup(html)


def number(value: Any, digits: int = 3) -> str:
    """A score for people: floats with ``digits`` decimals (whole numbers as such when
    ``digits`` is 0), ``—`` for none.

    >>> number(0.5), number(None), number(2), number(2.0, 0), number(0.25, 0)
    ('0.500', '—', '2', '2', '0.25')
    """
    if value is None:
        return "—"
    if isinstance(value, float):
        if digits == 0:
            return str(int(value)) if value.is_integer() else f"{value:g}"
        return f"{value:.{digits}f}"
    return str(value)


def when(timestamp: float, now: float | None = None) -> str:
    """How long ago ``timestamp`` was, in words.

    >>> when(100.0, now=100.0 + 3 * 3600), when(0.0, now=30.0)
    ('3 h ago', 'just now')
    """
    import time

    seconds = (time.time() if now is None else now) - timestamp
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            if unit == "d" and seconds > 30 * 86400:
                return time.strftime("%Y-%m-%d", time.localtime(timestamp))
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def highlight(code: str) -> Any:
    """Python ``code`` as coloured, escaped HTML (plain and escaped when it is very long)."""
    from html import escape

    if len(code) > MAX_HIGHLIGHT:
        return markup(f'<div class="hl"><pre>{escape(code)}</pre></div>')
    from pygments import highlight as colour
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return markup(colour(code, PythonLexer(), HtmlFormatter(cssclass="hl")))


def _pygments_css() -> str:
    from pygments.formatters import HtmlFormatter

    def scoped(style: str) -> str:
        rules = HtmlFormatter(style=style).get_style_defs(".hl").splitlines()
        return "\n".join(r for r in rules if r.startswith(".hl"))

    return f"{scoped('default')}\n@media (prefers-color-scheme: dark) {{\n{scoped('github-dark')}\n}}\n"


@lru_cache(maxsize=1)
def stylesheet() -> str:
    """The viewer's CSS: llmi's document style, the viewer's layout, the code colours."""
    from ..renderers.html import stylesheet as document_css

    own = resources.files("llmi.view").joinpath("static", CSS_NAME).read_text(encoding="utf-8")
    return f"{document_css()}\n{own}\n{_pygments_css()}"


@lru_cache(maxsize=1)
def stylesheet_version() -> str:
    return hashlib.sha256(stylesheet().encode("utf-8")).hexdigest()[:12]
