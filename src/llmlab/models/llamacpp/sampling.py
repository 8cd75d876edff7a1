"""The one mapping from ``GenerationConfig`` to a llama.cpp sampler chain, and token log-probabilities.

Both the in-process model and the batching engine sample through ``make_sampler``, so a setting
means the same in both and a seeded run gives the same tokens in both. The chain is llama-cpp-python's
own (``Llama._init_sampler``): repeat penalty over the last 64 tokens, then greedy, or top-k, typical
(off), top-p, min-p (off), temperature and a seeded draw. Min-p and typical sampling are off so that
``top_k``, ``top_p`` and ``temperature`` mean what they mean in transformers. (A LoRA adapter is
set on the context, not here: ``lora.py``.)

A ``json_schema`` becomes a grammar (llama-cpp-python's converter, over ``schema.grammar_schema``,
which refused what it cannot express when the config was made). Masking the whole vocabulary with it
at every step, as ``Llama._init_sampler`` does by putting it in the chain, costs Gemma 3 (262k tokens)
more than half its speed, so ``Constrained`` does what llama.cpp's own common sampler does: the chain
picks a token, the grammar is asked about that one token, and only when it refuses is the vocabulary
masked and the token picked again. The output is the same as with the grammar in the chain, up to the
random draw; a seeded run still repeats itself. ``bench/bench_structured.py`` measures both costs.
"""

from __future__ import annotations

import ctypes
import functools
import json
import random

from ...config import GenerationConfig
from ...errors import ConfigError
from ..decoding import log_softmax

PENALTY_LAST_N = 64  # as llama-cpp-python's Llama (last_n_tokens_size)


def make_sampler(config: GenerationConfig, n_vocab: int, model=None):
    """A ``llama_cpp._internals.LlamaSampler`` for ``config``; the caller closes it. ``model`` (the
    ``LlamaModel``, for its vocabulary) is needed when ``config.json_schema`` is set."""
    from llama_cpp import _internals

    grammar = None
    if config.json_schema is not None:
        grammar = grammar_sampler(model, gbnf(json.dumps(config.json_schema)))
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
    return s if grammar is None else Constrained(s, grammar, n_vocab)


@functools.lru_cache(maxsize=64)
def gbnf(schema_json: str) -> str:
    """The GBNF grammar for a JSON schema, given as JSON text so it can be cached (key order kept:
    the grammar writes properties in the order the schema names them)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from ...schema import grammar_schema

    try:
        return json_schema_to_gbnf(json.dumps(grammar_schema(json.loads(schema_json))))
    except (AssertionError, ValueError, KeyError, TypeError) as exc:  # what the converter raises
        raise ConfigError(f"json_schema: llama.cpp's grammar converter cannot express it: {exc}") from None


def grammar_sampler(model, grammar: str):
    """llama.cpp's grammar sampler for a GBNF grammar; one that its parser refuses is one line."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise ConfigError("json_schema: llama.cpp could not compile the grammar built from this schema "
                          "(too large or too deeply repeated; lower maxLength/maxItems)")
    return sampler


class Constrained:
    """A sampler chain and a grammar beside it (see the module docstring); closed as the chain is."""

    def __init__(self, chain, grammar, n_vocab: int):
        import numpy as np

        self.chain, self.grammar, self.n_vocab = chain, grammar, n_vocab
        dtype = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
        self._ids = np.arange(n_vocab, dtype=np.intc)
        self._all = np.zeros(n_vocab, dtype=dtype)
        self._one = np.zeros(1, dtype=dtype)

    def _apply(self, sampler, data) -> object:
        import llama_cpp

        arr = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)), size=len(data),
            selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(arr))
        return arr

    def pick(self, ctx, index: int) -> int:
        import llama_cpp
        import numpy as np

        ptr = llama_cpp.llama_get_logits_ith(ctx.ctx, index)
        floats = ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float))
        logits = np.ctypeslib.as_array(floats, shape=(self.n_vocab,))
        data = self._all
        data["id"], data["logit"], data["p"] = self._ids, logits, 0.0
        arr = self._apply(self.chain.sampler, data)
        tok = int(arr.data[arr.selected].id)
        one = self._one
        one["id"], one["logit"], one["p"] = tok, 1.0, 0.0
        self._apply(self.grammar, one)
        if not np.isfinite(one["logit"][0]):  # the grammar refuses it: mask everything, pick again
            data["id"], data["logit"], data["p"] = self._ids, logits, 0.0
            self._apply(self.grammar, data)
            arr = self._apply(self.chain.sampler, data)
            tok = int(arr.data[arr.selected].id)
        llama_cpp.llama_sampler_accept(self.grammar, tok)
        llama_cpp.llama_sampler_accept(self.chain.sampler, tok)
        return tok

    def close(self) -> None:
        import llama_cpp

        if self.grammar is not None:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None
        self.chain.close()


def sample(sampler, ctx, index: int) -> int:
    """The next token from row ``index`` of the context's last logits (-1: the last row)."""
    import llama_cpp

    if isinstance(sampler, Constrained):
        return sampler.pick(ctx, index)
    return int(llama_cpp.llama_sampler_sample(sampler.sampler, ctx.ctx, index))


def logits_row(ctx, index: int, n_vocab: int):
    """Log-probabilities (log-softmax) of row ``index`` of the context's last logits."""
    import llama_cpp
    import numpy as np

    ptr = llama_cpp.llama_get_logits_ith(ctx.ctx, index)
    floats = ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float))
    return log_softmax(np.ctypeslib.as_array(floats, shape=(n_vocab,)))
