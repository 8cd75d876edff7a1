"""JSON-schema constrained decoding for the hf backend, through llguidance's token masks.

At each step the grammar says which tokens may come next, as a bitmask over the vocabulary; the
disallowed logits are set to -inf before transformers' logits processors run, so greedy and sampled
decoding (top-k, top-p and temperature act on the allowed tokens only) both stay inside the grammar,
and the end-of-generation tokens are allowed only where the grammar accepts a complete value.

Why llguidance (``llguidance.LLMatcher``), after measuring it beside xgrammar (``GrammarCompiler``)
on the bundled SmolLM2 through this backend (bench/RESULTS.md, structured output, has the figures):

- llguidance builds its token masks lazily: compiling a schema is about a millisecond, the first
  step's mask 8-16 ms in all (a loaded 2-core machine); xgrammar precomputes them against the whole
  vocabulary, 11-120 ms per schema for SmolLM2's 49k tokens depending on load and options;
- a step's mask costs well under a millisecond in both (0.03-0.15 ms measured on quiet moments),
  against 40-60 ms for SmolLM2's forward pass, so decoding speed does not choose between them:
  constrained decoding ran at 1.02x the unconstrained speed;
- llguidance is one self-contained wheel; xgrammar requires triton (about 1 GB installed), which a
  CPU-only workbench never uses.
llguidance's own ``llguidance.torch`` helper applies the mask through ``torch.compile``, which on a
CPU took 20 s the first time; the mask is applied here with numpy's ``unpackbits`` instead.

The schema the grammar is built from is ``schema.grammar_schema``'s (refs inlined, annotations
dropped; what a grammar cannot enforce was refused when the config was made, one rule for every
backend), closed as llama.cpp's converter closes it: an object lists only the properties it names
unless ``additionalProperties`` says otherwise, a ``prefixItems`` array has exactly those items. JSON is
written compactly with ``", "`` and ``": "`` between items, as ``json.dumps`` does: free whitespace
lets a small model spend its tokens on newlines. A compiled grammar is kept per (tokenizer, schema)
and copied for each generation.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

from ..errors import BackendError, ConfigError, MissingDependencyError
from ..schema import grammar_schema

CACHED = 64  # compiled schemas kept per tokenizer
# compact JSON, separators as json.dumps writes them
_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def closed(s):
    """``s`` with objects and tuples closed as llama.cpp's converter closes them (see the docstring)."""
    if isinstance(s, list):
        return [closed(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {k: closed(v) if k in ("items", "prefixItems", "anyOf", "additionalProperties")
           else v for k, v in s.items()}
    if "properties" in out:
        out["properties"] = {name: closed(p) for name, p in s["properties"].items()}
        out.setdefault("additionalProperties", False)
    if "prefixItems" in out:  # a tuple: all of its items and no more (JSON Schema allows fewer)
        out.setdefault("items", False)
        out.setdefault("minItems", len(out["prefixItems"]))
    return out


class Grammars:
    """One tokenizer's compiled JSON-schema grammars (llguidance), most recently used kept."""

    def __init__(self, tokenizer, n_vocab: int, eog: frozenset[int]):
        try:
            import llguidance
            import llguidance.hf
        except ImportError as exc:
            raise MissingDependencyError("llguidance", "hf") from exc
        self._llg = llguidance
        self.n_vocab = n_vocab
        try:
            self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=n_vocab, eos_token=sorted(eog))
        except ValueError as exc:  # a slow (Python) tokenizer: llguidance reads only fast ones
            raise ConfigError(f"json_schema: llguidance cannot read this model's tokenizer ({exc})") from None
        self._compiled: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, schema: dict):
        """A fresh ``LLMatcher`` for ``schema`` (compiled once, then copied); ConfigError if refused."""
        key = json.dumps(schema)  # key order kept: properties are written in the order named
        with self._lock:
            matcher = self._compiled.get(key)
            if matcher is None:
                matcher = self._build(schema)
                self._compiled[key] = matcher
                if len(self._compiled) > CACHED:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(key)
            return matcher.deep_copy()

    def _build(self, schema: dict):
        llg = self._llg
        grammar = llg.LLMatcher.grammar_from_json_schema(closed(grammar_schema(schema)), overrides=_LAYOUT)
        matcher = llg.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ConfigError(f"json_schema: llguidance cannot compile it: {matcher.get_error()}")
        return matcher

    def mask(self, schema: dict) -> GrammarMask:
        return GrammarMask(self.compile(schema), self.n_vocab)


class GrammarMask:
    """A logits processor (``processor(input_ids, scores) -> scores``) that keeps one generation in
    its grammar. It consumes the tokens the sequence gained since its last call, so the decode loop
    only has to put it first among the processors."""

    def __init__(self, matcher, n_vocab: int):
        import numpy as np
        import torch
        from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

        self.matcher, self.n_vocab = matcher, n_vocab
        self.bits = allocate_token_bitmask(1, n_vocab)
        self._bytes = self.bits.view(np.uint8)
        self._np, self._torch, self._fill = np, torch, fill_next_token_bitmask
        self.seen: int | None = None  # sequence length at the last call

    def __call__(self, input_ids, scores):
        np = self._np
        n = input_ids.shape[-1]
        if self.seen is not None:
            for tok in input_ids[0, self.seen:].tolist():
                self.matcher.consume_token(tok)
        self.seen = n
        if self.matcher.is_error():  # only a bug can get here: every token was picked from the mask
            raise BackendError("the JSON-schema grammar lost track of the output: "
                               f"{self.matcher.get_error()}")
        self._fill(self.matcher, self.bits)
        # in numpy, on this thread: torch would split a masked_fill this wide over its threads, and
        # on a busy machine each step then waits for a descheduled one (24 ms per token measured)
        logits = scores.numpy()
        allowed = np.unpackbits(self._bytes, axis=-1, bitorder="little")[:, :logits.shape[-1]].view(bool)
        return self._torch.from_numpy(np.where(allowed, logits, -np.inf))
