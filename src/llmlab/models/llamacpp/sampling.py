"""The one mapping from ``GenerationConfig`` to a llama.cpp sampler chain, and token log-probabilities.

Both the in-process model and the batching engine sample through ``make_sampler``, so a setting
means the same in both and a seeded run gives the same tokens in both. The chain is llama-cpp-python's
own (``Llama._init_sampler``): repeat penalty over the last 64 tokens, then greedy, or top-k, typical
(off), top-p, min-p (off), temperature and a seeded draw. Min-p and typical sampling are off so that
``top_k``, ``top_p`` and ``temperature`` mean what they mean in transformers. LoRA adapters will be
applied here too.

A ``json_schema`` becomes a grammar (llama-cpp-python's converter, over ``schema.grammar_schema``,
which refused what it cannot express when the config was made) placed right after the penalties, as
``Llama._init_sampler`` places it: every later step only sees tokens the grammar allows, and
``llama_sampler_sample`` advances the grammar with the token picked. The grammar is checked against
the whole vocabulary at every step (llama.cpp's own server first tries the unconstrained pick; not
done here), which is what the benchmark in ``bench/bench_structured.py`` measures.
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

    s = _internals.LlamaSampler()
    s.add_penalties(n_vocab, PENALTY_LAST_N, config.repeat_penalty, 0.0, 0.0)
    if config.json_schema is not None:
        try:
            add_grammar(s, model, gbnf(json.dumps(config.json_schema)))
        except BaseException:
            s.close()
            raise
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


def add_grammar(chain, model, grammar: str) -> None:
    """Append the grammar sampler to ``chain``; a grammar llama.cpp's parser refuses is one line."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise ConfigError("json_schema: llama.cpp could not compile the grammar built from this schema "
                          "(too large or too deeply repeated; lower maxLength/maxItems)")
    llama_cpp.llama_sampler_chain_add(chain.sampler, sampler)


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
