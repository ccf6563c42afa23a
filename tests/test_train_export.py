"""Trained checkpoints back to GGUF, and `llmi generate --model CHECKPOINT_DIR` with the grammar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from train_fixtures import build_tiny, smollm2_trainable, tiny_model  # noqa: E402,F401

from llmi.cli import main  # noqa: E402
from llmi.errors import ConfigError  # noqa: E402
from llmi.tags import parse  # noqa: E402
from llmi.train.export import checkpoint_gguf, export_gguf  # noqa: E402

PROMPT = "<|im_start|>user\nTell me about owls.<|im_end|>\n<|im_start|>assistant\nOwls"


def logits_both_ways(folder: Path, gguf: Path) -> tuple[np.ndarray, np.ndarray]:
    """The model's logits over PROMPT from transformers and from llama.cpp reading the GGUF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmi.llm.local import open_llama

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(PROMPT)["input_ids"]
    with torch.no_grad():
        hf = AutoModelForCausalLM.from_pretrained(folder)(torch.tensor([ids])).logits[0].numpy()
    llama = open_llama(gguf, n_ctx=128, n_threads=1, logits_all=True)
    tokens = llama.tokenize(PROMPT.encode(), add_bos=False, special=True)
    assert tokens == ids  # the GGUF's tokenizer is the one the model was trained with
    llama.eval(tokens)
    return hf, np.array(llama.scores[: len(tokens)])


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_exported_gguf_computes_what_transformers_computes(smollm2_trainable, tmp_path, arch) -> None:
    folder = build_tiny(smollm2_trainable, tmp_path / arch, arch=arch, seed=3)
    gguf = export_gguf(folder, tmp_path / f"{arch}.gguf", outtype="f32")
    hf, cpp = logits_both_ways(folder, gguf)
    assert np.abs(hf - cpp).max() < 1e-3  # query/key rows permuted right, biases and names mapped
    small = export_gguf(folder, tmp_path / f"{arch}-q8.gguf", outtype="q8_0")
    assert small.stat().st_size < gguf.stat().st_size
    _, q8 = logits_both_ways(folder, small)
    assert (q8.argmax(-1) == hf.argmax(-1)).mean() >= 0.5


def test_lora_checkpoints_are_merged_before_export(smollm2_trainable, tmp_path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = build_tiny(smollm2_trainable, tmp_path / "base", seed=4)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                          LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft.save_pretrained(adapter)
    shutil.copy2(base / "llmi-gguf.json", adapter / "llmi-gguf.json")
    merged = tmp_path / "merged"
    peft.merge_and_unload().save_pretrained(merged)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (base / name).exists():
            shutil.copy2(base / name, merged / name)
    gguf = export_gguf(adapter, tmp_path / "adapter.gguf", outtype="f32")
    hf, cpp = logits_both_ways(merged, gguf)
    assert np.abs(hf - cpp).max() < 1e-3
    del torch


def test_export_refuses_what_it_cannot_do(tiny_model, tmp_path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model, plain)
    (plain / "llmi-gguf.json").unlink()
    with pytest.raises(ConfigError, match="convert_hf_to_gguf.py"):
        export_gguf(plain, tmp_path / "x.gguf")
    odd = tmp_path / "odd"
    shutil.copytree(tiny_model, odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="cannot export a 'gpt2' model"):
        export_gguf(odd, tmp_path / "y.gguf")
    with pytest.raises(ConfigError, match="unknown GGUF type"):
        export_gguf(tiny_model, tmp_path / "z.gguf", outtype="q2_k")
    assert not list(tmp_path.glob("*.gguf*"))  # a failed export leaves no half-written file


def test_generate_runs_a_checkpoint_folder_with_the_tag_grammar(tiny_model, tmp_path, monkeypatch) -> None:
    checkpoint = tmp_path / "final"
    shutil.copytree(tiny_model, checkpoint)
    monkeypatch.setenv("LLMI_SEARCH_BACKEND", "none")
    out = tmp_path / "doc"
    result = CliRunner().invoke(main, ["generate", "--model", str(checkpoint), "Tell me about owls.", "--seed", "2",
                                       "--max-tokens", "700", "--threads", "1", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    exported = checkpoint / "llmi-model-f16.gguf"
    stamp = exported.stat().st_mtime_ns
    doc = json.loads((out / "document.json").read_text())
    assert doc["meta"]["writer"] == str(checkpoint)
    text = "".join(s.get("raw", s.get("text", "")) for s in doc["segments"])
    tags = parse(text).tags
    # a random model writes nonsense, but the grammar makes every tag it writes well formed
    assert tags and all(t.ok for t in tags), text
    assert checkpoint_gguf(checkpoint) == exported and exported.stat().st_mtime_ns == stamp  # exported once


def test_the_packaged_smollm2_is_trainable_with_its_own_special_tokens(smollm2_trainable) -> None:
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_trainable)
    config = AutoConfig.from_pretrained(smollm2_trainable)
    # transformers' GGUF reader says <|im_start|>; generation must stop at <|im_end|>
    assert (tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_start|>", "<|im_end|>")
    assert (config.eos_token_id, config.bos_token_id) == (2, 1)
    assert "quantization_config" not in config.to_dict() and config.model_type == "llama"


@pytest.mark.slow
def test_smollm2_round_trip_through_training_format_and_back(smollm2_trainable, tmp_path) -> None:
    gguf = export_gguf(smollm2_trainable, tmp_path / "smollm2.gguf", outtype="f32")
    hf, cpp = logits_both_ways(smollm2_trainable, gguf)
    assert np.abs(hf - cpp).max() < 0.05 and (hf.argmax(-1) == cpp.argmax(-1)).all()
