"""Structured output benchmark: decode tokens/s with a JSON schema's grammar vs without, same model,
same prompt, same run; and the grammar's compile time.

    HF_HUB_OFFLINE=1 python bench/bench_structured.py [--repeats 5] [--tokens 128]
        [--models smollm2,gemma3-270m,hf/smollm2,hf/gemma3-270m]

1. decode tokens/s, greedy, ``--tokens`` new tokens: unconstrained vs constrained to
   ``{"story": string of at least 600 characters}`` (so both runs decode as many tokens); interleaved
   repeats, median. Issue 13's target: constrained >= 0.8 x unconstrained.
2. grammar compile time for a typical schema (a person; a pydantic owner with a list of pets):
   schema check, schema -> GBNF (llama-cpp-python's converter) and llama.cpp's parse of the grammar
   against the model's vocabulary, uncached; median of ``--repeats``. On ``hf/`` models:
   schema check, llguidance's compile and the first step's mask (its masks are built lazily, so
   the first step carries work another library does when compiling); the once-per-tokenizer wrap
   of the vocabulary is a row of its own.
3. ``--xgrammar`` (hf models; needs ``pip install xgrammar``): the alternative that was measured
   before llguidance was chosen, beside it: compile time of the same schemas, and the median cost
   of one step's mask (fill the bitmask, apply it to the logits, accept the token) along the
   tokens of a constrained greedy answer, in CPU time.
The load average is printed before and after: the machine may be shared.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learned to read."}]
# at least 600 characters, so the constrained run decodes as many tokens as the free one
STORY = {"type": "object", "properties": {"story": {"type": "string", "minLength": 600}},
         "required": ["story"]}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


def owner_schema() -> dict:
    from pydantic import BaseModel

    class Pet(BaseModel):
        name: str
        kind: str

    class Owner(BaseModel):
        name: str
        age: int
        pets: list[Pet]

    return Owner.model_json_schema()


def decode(model, prompt, schema, n: int) -> tuple[float, int]:
    r = model.generate(prompt, temperature=0, max_new_tokens=n, json_schema=schema)
    return r.timings.decode_tps, r.usage.completion_tokens


def compile_seconds(model, schema: dict) -> float:
    from llmlab import GenerationConfig

    if model.backend == "hf":
        return hf_compile_seconds(model, schema)
    from llmlab.models.llamacpp.sampling import gbnf, make_sampler

    gbnf.cache_clear()
    start = time.perf_counter()
    config = GenerationConfig(json_schema=schema)
    sampler = make_sampler(config, model.llm.n_vocab(), model.llm._model)
    elapsed = time.perf_counter() - start
    sampler.close()
    return elapsed


def hf_compile_seconds(model, schema: dict) -> float:
    import torch

    from llmlab import GenerationConfig

    grammars = hf_grammars(model)
    start = time.perf_counter()
    config = GenerationConfig(json_schema=schema)
    grammars._compiled.clear()  # uncached
    mask = grammars.mask(config.json_schema)
    mask(torch.tensor([[0]]), torch.zeros(1, grammars.n_vocab))
    return time.perf_counter() - start


def hf_grammars(model):
    if model._grammars is None:
        model._grammar_mask(PERSON)
    return model._grammars


def hf_wrap_seconds(model) -> float:
    from llmlab.models.hf_grammar import Grammars

    start = time.perf_counter()
    Grammars(model.tokenizer, hf_grammars(model).n_vocab, model._eog)
    return time.perf_counter() - start


def xgrammar_compile_seconds(compiler, schema: dict) -> float:
    from llmlab import GenerationConfig
    from llmlab.models.hf_grammar import closed
    from llmlab.schema import grammar_schema

    start = time.perf_counter()
    config = GenerationConfig(json_schema=schema)
    compiler.compile_json_schema(json.dumps(closed(grammar_schema(config.json_schema))),
                                 any_whitespace=False)
    return time.perf_counter() - start


def mask_step_ms(model, prompt, schema: dict, compiler=None) -> tuple[float, int]:
    """Median ms of one step's mask along a constrained greedy answer's tokens (llguidance, or
    xgrammar given its compiler), with the answer's length. CPU time of the process, not wall
    time: on a shared machine a step's wall time is mostly waiting for a core."""
    import torch

    from llmlab.models.hf_grammar import closed
    from llmlab.schema import grammar_schema

    r = model.generate(prompt, temperature=0, max_new_tokens=200, json_schema=schema)
    ids = model.token_ids(r.text, special=False) + [min(model._eog)]
    n = hf_grammars(model).n_vocab
    times = []
    if compiler is None:
        mask = hf_grammars(model).mask(schema)
        seq = [0]
        for tok in ids:
            start = time.process_time()
            mask(torch.tensor([seq]), torch.zeros(1, n))  # consumes the token before: same work
            times.append(time.process_time() - start)
            seq.append(tok)
    else:
        import xgrammar as xgr

        matcher = xgr.GrammarMatcher(compiler.compile_json_schema(
            json.dumps(closed(grammar_schema(schema))), any_whitespace=False))
        bits = xgr.allocate_token_bitmask(1, n)
        for tok in ids:
            start = time.process_time()
            logits = torch.zeros(1, n)
            matcher.fill_next_token_bitmask(bits)
            xgr.apply_token_bitmask_inplace(logits, bits)
            matcher.accept_token(tok)
            times.append(time.process_time() - start)
    return statistics.median(times) * 1000, len(ids)


def xgrammar_compiler(model):
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(model.tokenizer, vocab_size=hf_grammars(model).n_vocab,
                                              stop_token_ids=sorted(model._eog))
    return xgr.GrammarCompiler(info, cache_enabled=False)


def vocab(model) -> int:
    return len(model.tokenizer) if model.backend == "hf" else model.llm.n_vocab()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--models", default="smollm2,gemma3-270m,hf/smollm2")
    ap.add_argument("--xgrammar", action="store_true", help="hf models: measure xgrammar beside llguidance")
    args = ap.parse_args()

    from llmlab import load_model
    from llmlab.config import default_threads

    print(f"load average before: {os.getloadavg()[0]:.2f}, threads={default_threads()}, "
          f"repeats={args.repeats} (median), new tokens={args.tokens}\n")
    rows = []
    for alias in args.models.split(","):
        model = load_model(alias, log=False, n_ctx=2048)
        prompt = PROMPT if model.chats else "Here is a long story about a dragon who learned to read.\n\n"
        decode(model, prompt, None, 8), decode(model, prompt, STORY, 8)  # warm-up
        free, bound, counts = [], [], set()
        for _ in range(args.repeats):
            rate, n = decode(model, prompt, None, args.tokens)
            free.append(rate)
            counts.add(n)
            rate, n = decode(model, prompt, STORY, args.tokens)
            bound.append(rate)
            counts.add(n)
        f, b = statistics.median(free), statistics.median(bound)
        rows.append((f"{alias} (vocab {vocab(model)}): decode tokens/s, greedy",
                     f"{f:.1f}", f"{b:.1f}", f"{b / f:.3f}", ">= 0.8"))
        for name, schema in (("person", PERSON), ("pydantic owner + pets", owner_schema())):
            t = statistics.median(compile_seconds(model, schema) for _ in range(args.repeats))
            rows.append((f"{alias}: grammar compile, {name} ({len(json.dumps(schema))} chars of schema)",
                         "", f"{t * 1000:.1f} ms", "", ""))
        if model.backend == "hf":
            t = statistics.median(hf_wrap_seconds(model) for _ in range(args.repeats))
            rows.append((f"{alias}: llguidance's wrap of the tokenizer (once per model)", "",
                         f"{t * 1000:.0f} ms", "", ""))
            ms, n = mask_step_ms(model, prompt, owner_schema())
            rows.append((f"{alias}: one step's mask, llguidance (median of {n} steps)", "", f"{ms:.2f} ms",
                         "", ""))
        if model.backend == "hf" and args.xgrammar:
            start = time.perf_counter()
            compiler = xgrammar_compiler(model)
            rows.append((f"{alias}: xgrammar's TokenizerInfo (once per model)", "",
                         f"{(time.perf_counter() - start) * 1000:.0f} ms", "", ""))
            for name, schema in (("person", PERSON), ("pydantic owner + pets", owner_schema())):
                t = statistics.median(xgrammar_compile_seconds(compiler, schema) for _ in range(args.repeats))
                rows.append((f"{alias}: xgrammar compile, {name}", "", f"{t * 1000:.1f} ms", "", ""))
            ms, n = mask_step_ms(model, prompt, owner_schema(), compiler)
            rows.append((f"{alias}: one step's mask, xgrammar (median of {n} steps)", "", f"{ms:.2f} ms",
                         "", ""))
        print(f"{alias}: token counts seen {sorted(counts)}")
        model.close()

    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    from llmlab.runs import Table

    table = Table(["measure", "unconstrained", "with JSON schema", "ratio", "target"])
    for row in rows:
        table.add_row(*row)
    print(table.to_markdown())


if __name__ == "__main__":
    main()
