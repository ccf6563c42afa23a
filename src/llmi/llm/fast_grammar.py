"""Grammar-constrained sampling that costs little when the model already follows the grammar.

llama-cpp-python puts the grammar first in its sampler chain, so every token checks all ~49k
vocabulary entries against the grammar: on a 135M model that slows generation by a third or
more. llama.cpp's own tools sample first and ask the grammar about the one chosen token; only
when the grammar rejects it are all candidates filtered and the token drawn again. This module
does the same inside llama-cpp-python, by handing ``Llama`` a sampler with that behaviour.
The output still always satisfies the grammar: a token is kept only if the grammar accepts it.

The same subclass can put llama.cpp's DRY ("don't repeat yourself") sampler into the chain,
right after the repetition penalties, which llama-cpp-python's ``generate`` has no argument
for: it penalises continuing a sequence that already occurred, the loop small models fall into
("At night they are found in the city." three times over), while single words stay free.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Dry", "fast_grammar_llama_class"]

_CLASS: Any = None


@dataclass(frozen=True)
class Dry:
    """llama.cpp's DRY sampler settings: a token that would extend a repeat of more than
    ``allowed_length`` tokens (within the last ``last_n``; -1: the whole context) loses
    ``multiplier · base^(length - allowed_length)`` of its logit. A repeat cannot run across a
    ``breakers`` string, so the fixed parts of every tag (quotes, colons, braces) stay free."""

    multiplier: float = 0.8
    base: float = 1.75
    allowed_length: int = 2
    last_n: int = -1
    breakers: tuple[str, ...] = ("\n", ":", "'", '"', "{", "}", "<", ">", ",")


def fast_grammar_llama_class() -> Any:
    """A ``llama_cpp.Llama`` subclass whose grammar sampling checks the sampled token first, and
    whose ``dry`` attribute (a ``Dry``, or ``None``) adds the DRY sampler to the chain."""
    global _CLASS
    if _CLASS is None:
        import llama_cpp

        class FastGrammarLlama(llama_cpp.Llama):  # type: ignore[misc, name-defined]
            dry: Dry | None = None

            def _init_sampler(self, *args: Any, grammar: Any = None, **kwargs: Any) -> Any:
                plain = args or kwargs.get("logits_processor") or kwargs.get("mirostat_mode")
                if self.dry is None or plain:
                    chain = super()._init_sampler(*args, grammar=None, **kwargs)
                else:
                    chain = _chain_with_dry(self, self.dry, **kwargs)
                if grammar is None:
                    return chain
                return CheckFirstGrammarSampler(self, chain, grammar)

        _CLASS = FastGrammarLlama
    return _CLASS


def _chain_with_dry(
    llama: Any, dry: Dry, *, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, typical_p: float = 1.0,
    temp: float = 0.8, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
    **_unused: Any,
) -> Any:
    """The chain llama-cpp-python builds for these settings, with DRY after the penalties."""
    from llama_cpp import _internals

    chain = _internals.LlamaSampler()
    chain.add_penalties(n_vocab=llama._n_vocab, penalty_last_n=llama.last_n_tokens_size,
                        penalty_repeat=repeat_penalty, penalty_freq=frequency_penalty,
                        penalty_present=presence_penalty)
    chain.add_dry(llama._model, dry.multiplier, dry.base, dry.allowed_length, dry.last_n, list(dry.breakers))
    if temp == 0.0:
        chain.add_greedy()
        return chain
    chain.add_top_k(top_k)
    chain.add_typical(typical_p, 1)
    chain.add_top_p(top_p, 1)
    chain.add_min_p(min_p, 1)
    chain.add_temp(temp)
    chain.add_dist(llama._seed)
    return chain


class CheckFirstGrammarSampler:
    """Samples with ``chain``; keeps the token if ``grammar`` allows it, else redraws under it.

    Quacks like llama-cpp-python's ``LlamaSampler`` as far as ``Llama`` uses it.
    """

    def __init__(self, llama: Any, chain: Any, grammar: Any) -> None:
        import numpy as np
        from llama_cpp import llama_cpp as low

        self._low = low
        self.chain = chain  # keeps the chain (and its C sampler) alive
        vocab = llama._model.vocab
        self.grammar = low.llama_sampler_init_grammar(
            vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self.grammar:
            raise ValueError("llama.cpp rejected the grammar")
        self.n_vocab = low.llama_vocab_n_tokens(vocab)
        self._one = (low.llama_token_data * 1)()
        self._one_arr = low.llama_token_data_array(self._one, 1, -1, False)
        self._all = (low.llama_token_data * self.n_vocab)()
        self._all_arr = low.llama_token_data_array(self._all, self.n_vocab, -1, False)
        self._all_np = np.ctypeslib.as_array(self._all)
        self._ids = np.arange(self.n_vocab, dtype=self._all_np["id"].dtype)
        self._np = np
        self.rejected = 0  # how often the grammar sent a token back (for benchmarks)

    def sample(self, ctx: Any, idx: int = -1) -> int:
        low = self._low
        token = low.llama_sampler_sample(self.chain.sampler, ctx.ctx, idx)
        if not self._allows(token):
            self.rejected += 1
            token = self._constrained(ctx, idx)
        low.llama_sampler_accept(self.grammar, token)
        return token

    def _allows(self, token: int) -> bool:
        one = self._one[0]
        one.id, one.logit, one.p = token, 0.0, 0.0
        arr = self._one_arr
        arr.size, arr.selected, arr.sorted = 1, -1, False
        self._low.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        return not math.isinf(self._one[0].logit)

    def _constrained(self, ctx: Any, idx: int) -> int:
        low, np = self._low, self._np
        logits = low.llama_get_logits_ith(ctx.ctx, idx)
        view = self._all_np
        view["id"] = self._ids
        view["logit"] = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        view["p"] = 0.0
        arr = self._all_arr
        arr.data = self._all
        arr.size, arr.selected, arr.sorted = self.n_vocab, -1, False
        low.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        low.llama_sampler_apply(self.chain.sampler, ctypes.byref(arr))
        token = int(arr.data[arr.selected].id)
        # The chain already saw the rejected token in llama_sampler_sample; the samplers whose
        # state depends on history (penalties) now also record the token actually used.
        low.llama_sampler_accept(self.chain.sampler, token)
        return token

    def accept(self, token: int) -> None:
        self._low.llama_sampler_accept(self.chain.sampler, token)
        self._low.llama_sampler_accept(self.grammar, token)

    def reset(self) -> None:
        self._low.llama_sampler_reset(self.chain.sampler)
        self._low.llama_sampler_reset(self.grammar)

    def close(self) -> None:
        if self.grammar:
            self._low.llama_sampler_free(self.grammar)
            self.grammar = None
        self.chain.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the C library may be gone already
            pass
