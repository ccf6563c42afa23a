"""A trained checkpoint back to GGUF, so the embedded writer (llama.cpp, with the tag grammar)
can run it: ``llmi generate --model runs/x/final``.

A checkpoint saved by ``llmi train grpo`` is a Hugging Face folder (``config.json``, safetensors,
the tokenizer) that carries ``llmi-gguf.json``, the GGUF metadata of the model it started from
(``llmi.train.model``). Export writes:

1. the model's shape, read from ``config.json`` (llama, qwen2 and qwen3 architectures);
2. the tokenizer and names, copied from ``llmi-gguf.json`` (exactly what llama.cpp read before);
3. the weights, renamed to llama.cpp's tensor names; llama's query and key rows are permuted
   back to llama.cpp's rotary layout (transformers un-permutes them when it reads a GGUF).
   ``f32`` keeps every weight; ``f16`` (the default) and ``q8_0`` shrink the matrices.

A LoRA checkpoint (``adapter_config.json``) is merged into its base first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..errors import ConfigError, MissingDependency
from .model import GGUF_META

__all__ = ["OUTTYPES", "can_export", "checkpoint_gguf", "export_gguf", "is_checkpoint", "write_gguf"]

OUTTYPES = ("f32", "f16", "q8_0")
_ARCHS = {"llama": "LLAMA", "qwen2": "QWEN2", "qwen3": "QWEN3"}


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """A Hugging Face model folder (full weights or a LoRA adapter)."""
    folder = Path(path)
    return folder.is_dir() and ((folder / "config.json").is_file() or (folder / "adapter_config.json").is_file())


def checkpoint_gguf(checkpoint: str | os.PathLike[str], *, outtype: str = "f16") -> Path:
    """The GGUF for ``checkpoint``, exported once into the folder (again when the weights change)."""
    folder = Path(checkpoint)
    target = folder / f"llmi-model-{outtype}.gguf"
    weights = [p.stat().st_mtime_ns for p in folder.glob("*.safetensors")]
    if target.is_file() and weights and target.stat().st_mtime_ns >= max(weights):
        return target
    return export_gguf(folder, target, outtype=outtype)


def export_gguf(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *, outtype: str = "f16") -> Path:
    """Write ``checkpoint`` as a GGUF file at ``out`` (see the module docstring)."""
    folder = Path(checkpoint)
    meta = _metadata(folder)
    config, tensors = _weights(folder)
    return write_gguf(config, tensors, meta, out, outtype=outtype)


def write_gguf(config: Mapping[str, Any], tensors: Iterable[tuple[str, Any]], meta: Mapping[str, Any],
               out: str | os.PathLike[str], *, outtype: str = "f16") -> Path:
    """Write a model given as its ``config.json`` values and ``(name, float32 array)`` tensors in
    transformers' naming, with the GGUF metadata ``meta`` (``llmi-gguf.json``), to ``out``."""
    try:
        import gguf
        import numpy as np
    except ImportError:
        raise MissingDependency("gguf", "train") from None
    if outtype not in OUTTYPES:
        raise ConfigError(f"unknown GGUF type {outtype!r}; choose {', '.join(OUTTYPES)}")
    arch_name = config.get("model_type")
    if arch_name not in _ARCHS:
        raise ConfigError(f"cannot export a {arch_name!r} model to GGUF; llmi exports {', '.join(_ARCHS)} models")
    arch = getattr(gguf.MODEL_ARCH, _ARCHS[arch_name])
    names = gguf.get_tensor_name_map(arch, int(config["num_hidden_layers"]))

    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), gguf.MODEL_ARCH_NAMES[arch])
    try:
        # 1. shape, 2. tokenizer and names
        _shape(writer, config, outtype)
        _copy_metadata(writer, meta, gguf)
        # 3. weights
        vocab = next((len(e["value"]) for e in meta["entries"] if e["key"] == "tokenizer.ggml.tokens"), None)
        for hf_name, array in tensors:
            if hf_name == "lm_head.weight" and config.get("tie_word_embeddings"):
                continue
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise ConfigError(f"cannot export the tensor {hf_name!r}: llama.cpp has no place for it")
            if name == "token_embd.weight" and vocab is not None and array.shape[0] != vocab:
                raise ConfigError(f"the checkpoint has {array.shape[0]} token embeddings but its tokenizer "
                                  f"{vocab} tokens; it cannot be exported with the tokenizer it started from")
            if arch_name == "llama" and (".attn_q." in name or ".attn_k." in name):
                heads = config["num_attention_heads"] if ".attn_q." in name else config["num_key_value_heads"]
                array = _permute(array, int(heads))
            _add_tensor(writer, name, array, outtype, gguf, np)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        partial.replace(out_path)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return out_path


def can_export(config: Mapping[str, Any], folder: Path) -> bool:
    """Whether a model of this config, started from ``folder``, can be written to GGUF."""
    return config.get("model_type") in _ARCHS and (folder / GGUF_META).is_file()


def _metadata(folder: Path) -> dict[str, Any]:
    path = folder / GGUF_META
    if not path.is_file():
        raise ConfigError(
            f"{str(folder)!r} has no {GGUF_META}: llmi can export checkpoints of models it started from a "
            "GGUF (the default SmolLM2, or --model FILE.gguf). For other models, convert the folder with "
            "llama.cpp's convert_hf_to_gguf.py and pass the .gguf file"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _weights(folder: Path) -> tuple[dict[str, Any], Iterator[tuple[str, Any]]]:
    """The model config and its tensors as float32 arrays (a LoRA adapter merged first)."""
    if (folder / "adapter_config.json").is_file():
        return _merged_adapter(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    files = sorted(folder.glob("*.safetensors"))
    files = [f for f in files if not f.name.startswith("adapter_")]
    if not files:
        raise ConfigError(f"{str(folder)!r} holds no .safetensors weights")

    def tensors() -> Iterator[tuple[str, Any]]:
        from safetensors import safe_open

        for file in files:
            with safe_open(str(file), framework="pt") as fh:
                for key in fh.keys():
                    yield key, fh.get_tensor(key).float().numpy()

    return config, tensors()


def _merged_adapter(folder: Path) -> tuple[dict[str, Any], Iterator[tuple[str, Any]]]:
    try:
        from peft import AutoPeftModelForCausalLM
    except ImportError:
        raise MissingDependency("peft", "train") from None
    model = AutoPeftModelForCausalLM.from_pretrained(str(folder)).merge_and_unload()
    config = model.config.to_dict()
    state = model.state_dict()
    return config, ((k, v.float().numpy()) for k, v in state.items())


def _permute(weights: Any, heads: int) -> Any:
    """transformers' rotary layout -> llama.cpp's (the inverse of what its GGUF reader does)."""
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _shape(writer: Any, config: Mapping[str, Any], outtype: str) -> None:
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or config["hidden_size"] // heads)
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ConfigError(f"cannot export rotary scaling {rope.get('rope_type')!r} to GGUF")
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_freq_base(float(theta))
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_file_type({"f32": 0, "f16": 1, "q8_0": 7}[outtype])


def _copy_metadata(writer: Any, meta: Mapping[str, Any], gguf: Any) -> None:
    # The old architecture's shape keys are replaced by the ones just written from config.json.
    arch_prefix = f"{meta.get('architecture')}."
    for entry in meta["entries"]:
        if entry["key"].startswith(arch_prefix):
            continue
        kind = gguf.GGUFValueType[entry["type"]]
        sub = gguf.GGUFValueType[entry["item_type"]] if "item_type" in entry else None
        writer.add_key_value(entry["key"], entry["value"], kind, sub_type=sub)


def _add_tensor(writer: Any, name: str, array: Any, outtype: str, gguf: Any, np: Any) -> None:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim < 2 or outtype == "f32":
        writer.add_tensor(name, array)
    elif outtype == "q8_0" and array.shape[-1] % 32 == 0:
        qtype = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    else:
        writer.add_tensor(name, array.astype(np.float16))
