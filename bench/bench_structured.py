"""Structured output benchmark: decode tokens/s with a JSON schema's grammar vs without, same model,
same prompt, same run; and the grammar's compile time.

    python bench/bench_structured.py [--repeats 5] [--tokens 128] [--models smollm2,gemma3-270m]

1. decode tokens/s, greedy, ``--tokens`` new tokens: unconstrained vs constrained to
   ``{"story": string of at least 600 characters}`` (so both runs decode as many tokens); interleaved
   repeats, median. Issue 13's target: constrained >= 0.8 x unconstrained.
2. grammar compile time for a typical schema (a person; a pydantic owner with a list of pets):
   schema check, schema -> GBNF (llama-cpp-python's converter) and llama.cpp's parse of the grammar
   against the model's vocabulary, uncached; median of ``--repeats``.
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
    from llmlab.models.llamacpp.sampling import gbnf, make_sampler

    gbnf.cache_clear()
    start = time.perf_counter()
    config = GenerationConfig(json_schema=schema)
    sampler = make_sampler(config, model.llm.n_vocab(), model.llm._model)
    elapsed = time.perf_counter() - start
    sampler.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--models", default="smollm2,gemma3-270m")
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
        rows.append((f"{alias} (vocab {model.llm.n_vocab()}): decode tokens/s, greedy",
                     f"{f:.1f}", f"{b:.1f}", f"{b / f:.3f}", ">= 0.8"))
        for name, schema in (("person", PERSON), ("pydantic owner + pets", owner_schema())):
            t = statistics.median(compile_seconds(model, schema) for _ in range(args.repeats))
            rows.append((f"{alias}: grammar compile, {name} ({len(json.dumps(schema))} chars of schema)",
                         "", f"{t * 1000:.1f} ms", "", ""))
        print(f"{alias}: token counts seen {sorted(counts)}")
        model.close()

    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print("| measure | unconstrained | with JSON schema | ratio | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
