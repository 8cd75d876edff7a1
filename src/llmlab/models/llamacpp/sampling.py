"""The one mapping from ``GenerationConfig`` to a llama.cpp sampler chain, and token log-probabilities.

Both the in-process model and the batching engine sample through ``make_sampler``, so a setting
means the same in both and a seeded run gives the same tokens in both. The chain is llama-cpp-python's
own (``Llama._init_sampler``): repeat penalty over the last 64 tokens, then greedy, or top-k, typical
(off), top-p, min-p (off), temperature and a seeded draw. Min-p and typical sampling are off so that
``top_k``, ``top_p`` and ``temperature`` mean what they mean in transformers. This is the place where
grammars (constrained output) and LoRA adapters will be applied.
"""

from __future__ import annotations

import ctypes
import random

from ...config import GenerationConfig
from ..decoding import log_softmax

PENALTY_LAST_N = 64  # as llama-cpp-python's Llama (last_n_tokens_size)


def make_sampler(config: GenerationConfig, n_vocab: int):
    """A ``llama_cpp._internals.LlamaSampler`` for ``config``; the caller closes it."""
    from llama_cpp import _internals

    s = _internals.LlamaSampler()
    s.add_penalties(n_vocab, PENALTY_LAST_N, config.repeat_penalty, 0.0, 0.0)
    if config.greedy:
        s.add_greedy()
    else:
        s.add_top_k(config.top_k)
        s.add_typical(1.0, 1)
        s.add_top_p(config.top_p, 1)
        s.add_min_p(0.0, 1)
        s.add_temp(float(config.temperature))
        s.add_dist(config.seed if config.seed is not None else random.randrange(2**31))
    return s


def sample(sampler, ctx, index: int) -> int:
    """The next token from row ``index`` of the context's last logits (-1: the last row)."""
    import llama_cpp

    return int(llama_cpp.llama_sampler_sample(sampler.sampler, ctx.ctx, index))


def logits_row(ctx, index: int, n_vocab: int):
    """Log-probabilities (log-softmax) of row ``index`` of the context's last logits."""
    import llama_cpp
    import numpy as np

    ptr = llama_cpp.llama_get_logits_ith(ctx.ctx, index)
    floats = ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float))
    return log_softmax(np.ctypeslib.as_array(floats, shape=(n_vocab,)))
