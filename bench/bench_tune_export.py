"""How closely does an exported adapter answer as the adapter itself? Greedy token ids of every form
against ``hf/smollm2+ADAPTER``, in one run.

A LoRA adapter (rank 4 on q/k/v/o, the tests' colour conversations trained until learnt, or
``--adapter DIR``) is merged (``tune merge``) and exported three ways (``tune export``: the LoRA GGUF
on the bundled Q4_1 base, a merged f16 GGUF, a merged q8_0 GGUF). Each form and, for comparison, the
base alone on llama.cpp against the base on transformers, continues the same prompts greedily
(plain-text and chat, ``--tokens`` new tokens); the table gives how many continuations are identical
token for token and, for the others, after how many tokens they part.

    HF_HUB_OFFLINE=1 python bench/bench_tune_export.py [--tokens 48] [--adapter DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

PROMPTS = ["Write a sentence about the sea.", "Colour of coal?", "Tell me about dogs.",
           "What is the capital of France?"]  # as chats
RAW = ["The history of the city began", "Once upon a time, there was", "The best way to learn a language is",
       "In 1969, the first", "My favourite food is", "Scientists have discovered that",
       "The weather today is", "def fibonacci(n):"]
COLOURS = [("sky", "blue"), ("grass", "green"), ("snow", "white"), ("coal", "black")]


def ids(model, prompt, n: int) -> list[int]:
    from llmlab.chat import Message
    from llmlab.config import GenerationConfig

    config = GenerationConfig(max_new_tokens=n, temperature=0, logprobs=0)
    r = model.generate([Message("user", prompt)] if prompt in PROMPTS else prompt, config)
    return [t.id for t in r.logprobs]


def parted(a: list[int], b: list[int]) -> int | None:
    """None when identical, else the number of equal tokens before the first difference."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--adapter", type=Path, default=None, help="an hf/smollm2 adapter (default: train one)")
    args = ap.parse_args()

    from llmlab import load_model
    from llmlab.store import Store
    from llmlab.tune import Settings, tune
    from llmlab.tune.export import export, merge

    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    base = load_model("hf/smollm2", log=False)
    adapter = args.adapter
    if adapter is None:
        data = tmp / "colours.jsonl"
        data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Colour of {t}?"},
                                                         {"role": "assistant", "content": c}]}) + "\n"
                                for t, c in COLOURS))
        s = Settings(epochs=5, batch_size=4, held_out=0, lr=3e-3, dropout=0.0, rank=4, alpha=8, max_length=64)
        store = Store.open(tmp / "runs.db")
        adapter = tune(data, "hf/smollm2", tmp / "adapter", settings=s, loaded=base, store=store,
                       progress=False).out
        store.close()
    prompts = PROMPTS + RAW
    tuned = load_model(f"hf/smollm2+{adapter}", log=False)
    reference = {p: ids(tuned, p, args.tokens) for p in prompts}
    tuned.close()
    base_hf = {p: ids(base, p, args.tokens) for p in prompts}
    merged_dir = merge(adapter, tmp / "merged", loaded=base)
    forms = {"merged hf folder": f"hf/{merged_dir}"}
    for name, file, kw in (("merged GGUF, f16", "merged-f16.gguf", {"merged": True, "outtype": "f16"}),
                           ("merged GGUF, q8_0", "merged-q8_0.gguf", {"merged": True, "outtype": "q8_0"}),
                           ("LoRA GGUF on the Q4_1 base", "lora.gguf", {})):
        path = export(adapter, tmp / file, loaded=base, **kw)
        forms[name] = f"llamacpp/{path}" if kw else f"llamacpp/smollm2+{path}"
    base.close()

    rows = []
    for name, spec in forms.items():
        m = load_model(spec, log=False)
        got = {p: ids(m, p, args.tokens) for p in prompts}
        m.close()
        rows.append((name, [parted(reference[p], got[p]) for p in prompts]))
    cpp = load_model("smollm2", log=False)
    rows.append(("(the base alone, llamacpp/ vs hf/)",
                 [parted(base_hf[p], ids(cpp, p, args.tokens)) for p in prompts]))
    cpp.close()

    print(f"\n{len(prompts)} prompts ({len(PROMPTS)} chats, {len(RAW)} raw texts), {args.tokens} new tokens, "
          "greedy; token ids against hf/smollm2+ADAPTER\n")
    print("| form | identical | the others part after (tokens) |\n|---|---|---|")
    for name, parts in rows:
        others = [p for p in parts if p is not None]
        where = (f"{min(others)}-{max(others)} (median {statistics.median(others):g})" if others else "-")
        print(f"| {name} | {parts.count(None)} of {len(parts)} | {where} |")


if __name__ == "__main__":
    main()
