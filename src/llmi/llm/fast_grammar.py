"""Grammar-constrained sampling that costs little when the model already follows the grammar.

llama-cpp-python puts the grammar first in its sampler chain, so every token checks all ~49k
vocabulary entries against the grammar: on a 135M model that slows generation by a third or
more. llama.cpp's own tools sample first and ask the grammar about the one chosen token; only
when the grammar rejects it are all candidates filtered and the token drawn again. This module
does the same inside llama-cpp-python, by handing ``Llama`` a sampler with that behaviour.
The output still always satisfies the grammar: a token is kept only if the grammar accepts it.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

__all__ = ["fast_grammar_llama_class"]

_CLASS: Any = None


def fast_grammar_llama_class() -> Any:
    """A ``llama_cpp.Llama`` subclass whose grammar sampling checks the sampled token first."""
    global _CLASS
    if _CLASS is None:
        import llama_cpp

        class FastGrammarLlama(llama_cpp.Llama):  # type: ignore[misc, name-defined]
            def _init_sampler(self, *args: Any, grammar: Any = None, **kwargs: Any) -> Any:
                chain = super()._init_sampler(*args, grammar=None, **kwargs)
                if grammar is None:
                    return chain
                return CheckFirstGrammarSampler(self, chain, grammar)

        _CLASS = FastGrammarLlama
    return _CLASS


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
