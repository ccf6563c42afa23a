"""The numpy MiniLM gives sentence-transformers' vectors, and loads without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from llmi.library.embed import Embedder
from llmi.library.minilm import MAX_TOKENS, MiniLM, read_safetensors

TEXTS = [
    "a red kangaroo",
    "The Eiffel Tower at night. landmarks, buildings, Paris",
    "x",
    "",
    "Ünïcödé, 中文 and émoji 🦘 in one caption!",
    "word " * 400,  # longer than the model's window: truncated as sentence-transformers does
]


def test_vectors_match_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    from llmi.library.embed import minilm_path

    reference = st.SentenceTransformer(str(minilm_path()), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = Embedder().encode(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.all((got * expected).sum(axis=1) > 0.99999)
    assert reference.max_seq_length == MAX_TOKENS


def test_unit_vectors_in_the_order_given_whatever_the_batch():
    enc = MiniLM.load()
    one_by_one = np.stack([enc.encode([t])[0] for t in TEXTS])
    batched = enc.encode(TEXTS, batch_size=4)
    assert np.allclose(one_by_one, batched, atol=1e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert enc.encode([]).shape == (0, 384)


def test_a_query_needs_no_torch():
    code = (
        "import sys\n"
        "from llmi.library.embed import Embedder\n"
        "Embedder().encode(['a red kangaroo'])\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_safetensors_reader_checks_what_it_reads(tmp_path):
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                         "b": {"dtype": "BF16", "shape": [1], "data_offsets": [16, 18]}}).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + np.arange(4, dtype="<f4").tobytes() + b"\0\0")
    from llmi.errors import ConfigError

    with pytest.raises(ConfigError, match="BF16"):
        read_safetensors(path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + np.arange(4, dtype="<f4").tobytes())
    assert read_safetensors(path)["w"].tolist() == [[0.0, 1.0], [2.0, 3.0]]
