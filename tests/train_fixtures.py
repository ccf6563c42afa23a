"""Models for the training tests: tiny random llama and qwen2 models with the packaged SmolLM2's
real tokenizer and GGUF metadata (so they train, export to GGUF and run in llama.cpp), built
from the converted SmolLM2 folder (converted once per machine, then cached)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_trainable() -> Path:
    pytest.importorskip("trl")
    pytest.importorskip("llama_cpp")
    from llmi.train.model import trainable_model

    return Path(trainable_model())


def build_tiny(base: Path, out: Path, arch: str = "llama", seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from llmi.train.model import GGUF_META

    tokenizer = AutoTokenizer.from_pretrained(base)
    shape = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                 pad_token_id=tokenizer.pad_token_id, rms_norm_eps=1e-5)
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shape))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**shape, use_sliding_window=False))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.copy2(base / GGUF_META, out / GGUF_META)
    return out


@pytest.fixture(scope="session")
def tiny_model(smollm2_trainable, tmp_path_factory) -> Path:
    return build_tiny(smollm2_trainable, tmp_path_factory.mktemp("tiny-llama"))
