"""Test-time scaling: a better document from more compute at inference (``llmi generate --scale N``).

The LLM-I paper describes the procedure; its released code does not include it. Five stages,
each switchable (``ScaleConfig``) and each recording what it changed and what it cost::

    prompt ─► 1. sample N candidates at once (seeds s..s+N-1, tools running as they are written)
           ─► 2. validate: drop unreadable tags and impossible edits, prefer the images asked for
           ─► 3. select with a judge: reward scores, a pairwise tournament, or one list-wise call
           ─► 4. enhance the chosen answer's tool calls: rewrite a failed search's query, repair
                 chart code from its error, make a vague generation prompt specific
           ─► 5. polish the prose around the images (every tag kept in its place) and re-render
           ─► Document, with meta["scaling"]: candidates, scores, selection, changes, costs

Modules, in that order: ``sample``, ``validate``, ``selection``, ``enhance``, ``polish``;
``pipeline`` runs them (``Scaler``, ``ascale``, ``scale``); ``record`` holds the values
between stages and the record; ``costs`` counts; ``asks`` puts small questions to the writer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Cost", "ScaleConfig", "Scaler", "ScalingReport", "ascale", "scale"]

_LAZY = {
    "Cost": "costs", "ScaleConfig": "config", "Scaler": "pipeline", "ScalingReport": "record",
    "ascale": "pipeline", "scale": "pipeline",
}

if TYPE_CHECKING:  # pragma: no cover
    from .config import ScaleConfig
    from .costs import Cost
    from .pipeline import Scaler, ascale, scale
    from .record import ScalingReport


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'llmi.scaling' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
