"""GRPO rollouts with llama.cpp on CPU instead of transformers' ``generate``.

On a CPU, transformers' ``generate`` runs a Python loop over tokens with the whole model in
float32 (at 56 tokens for SmolLM2-135M the two cost about the same, bench/README.md; longer
completions are not measured yet). ``LlamaCppRollout`` is a TRL ``rollout_func`` that samples with llama.cpp instead:
after every optimiser step the policy's weights are written to a GGUF file (``write_gguf``, f16
by default; a couple of seconds for 135M parameters) and loaded, then each prompt is sampled
with the trainer's temperature and top-p. The prompt and completion token ids it returns are
the trainer's own tokenizer's (llama.cpp reads the same vocabulary from the GGUF), and the
sampled tokens' log-probabilities come with them, so TRL trains on exactly what was sampled.

As with vLLM, the sampler's weights (f16) differ from the trainer's (f32) in the last bits.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError

__all__ = ["LlamaCppRollout", "available"]


class LlamaCppRollout:
    """A TRL ``rollout_func``: ``rollout(prompts, trainer) -> {"prompt_ids", "completion_ids", "logprobs"}``.

    ``meta`` is the ``llmi-gguf.json`` of the model being trained (its tokenizer for llama.cpp).
    """

    def __init__(self, meta: Path, *, temperature: float, top_p: float, max_tokens: int, threads: int,
                 seed: int = 0, outtype: str = "f16") -> None:
        if not meta.is_file():
            raise ConfigError(f"llama.cpp rollouts need the model's GGUF metadata ({meta}); use --generation transformers")
        self.meta = json.loads(meta.read_text(encoding="utf-8"))
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.threads = threads
        self.seed = seed
        self.outtype = outtype
        self._folder = Path(tempfile.mkdtemp(prefix="llmi-rollout-"))
        self._llama: Any = None
        self._step: int | None = None
        self._calls = 0

    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict[str, list]:
        step = trainer.state.global_step
        if self._llama is None or step != self._step:
            self._load(trainer.model, step)
        tokenizer = trainer.processing_class
        prompt_ids, completion_ids, logprobs = [], [], []
        for prompt in prompts:
            ids = _prompt_ids(tokenizer, prompt)
            tokens, lps = self._sample(ids, eos=tokenizer.eos_token_id)
            prompt_ids.append(ids)
            completion_ids.append(tokens)
            logprobs.append(lps)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}

    def close(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None
        shutil.rmtree(self._folder, ignore_errors=True)

    # -- stages -------------------------------------------------------------------------------

    def _load(self, model: Any, step: int) -> None:
        """The policy as it is now, written to GGUF and opened with llama.cpp."""
        from ..llm.local import open_llama
        from .export import write_gguf

        if hasattr(model, "peft_config"):
            raise ConfigError("llama.cpp rollouts train every weight; with --lora use --generation transformers")
        tensors = ((name, value.detach().float().cpu().numpy()) for name, value in model.state_dict().items())
        path = self._folder / f"policy-{step}.gguf"
        write_gguf(model.config.to_dict(), tensors, self.meta, path, outtype=self.outtype)
        if self._llama is not None:
            self._llama.close()
        self._llama = open_llama(path, n_ctx=_context(model.config), n_threads=self.threads)
        for old in self._folder.glob("policy-*.gguf"):
            if old != path:
                old.unlink(missing_ok=True)
        self._step = step

    def _sample(self, prompt: list[int], *, eos: int | None) -> tuple[list[int], list[float]]:
        import numpy as np

        llama = self._llama
        if len(prompt) + self.max_tokens > llama.n_ctx():
            raise ConfigError(f"a prompt of {len(prompt)} tokens and {self.max_tokens} new ones do not fit the "
                              f"model's context of {llama.n_ctx()} tokens")
        self._calls += 1
        llama.reset()
        llama.set_seed(self.seed * 1_000_003 + self._calls)
        tokens: list[int] = []
        logprobs: list[float] = []
        temperature = max(self.temperature, 1e-5)
        generator = llama.generate(prompt, temp=self.temperature, top_p=self.top_p, top_k=0, min_p=0.0,
                                   repeat_penalty=1.0, reset=True)
        try:
            for token in generator:
                # the logits that chose this token: those of the last position decoded
                raw = np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(llama.n_vocab(),))
                logits = raw.astype(np.float64) / temperature
                top = logits.max()
                logprobs.append(float(logits[token] - top - math.log(np.exp(logits - top).sum())))
                tokens.append(int(token))
                if token == eos or _is_eog(llama, token) or len(tokens) >= self.max_tokens:
                    break
        finally:
            generator.close()
        return tokens, logprobs


def _prompt_ids(tokenizer: Any, prompt: Any) -> list[int]:
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def _context(config: Any) -> int:
    return int(min(getattr(config, "max_position_embeddings", 4096) or 4096, 8192))


def _is_eog(llama: Any, token: int) -> bool:
    from llama_cpp import llama_cpp as low

    return bool(low.llama_vocab_is_eog(llama._model.vocab, token))


def available() -> bool:
    """llama-cpp-python is installed."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None
