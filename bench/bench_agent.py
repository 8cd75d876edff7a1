"""Agent benchmark: share of llmlab's built-in agent tasks solved, per model, with the call format
constrained by its grammar and without it (the same prompt and worked examples; the reply searched for
a JSON object), plus SmolLM2 constrained without worked examples.

    python bench/bench_agent.py [--models smollm2,gemma3-270m] [--max-steps 4] [--tokens 64]

Greedy, one trial per task (pass^1; with temperature 0 more trials would repeat it). A fresh call
log in a temporary folder, so nothing is resumed. Prints the table (markdown) with 95% bootstrap
intervals over tasks, the per-category success and the wall time of each configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="smollm2,gemma3-270m")
    ap.add_argument("--max-steps", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--tasks", default="builtin")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = tempfile.mkdtemp(prefix="bench-agent-")
    os.environ["LLMLAB_HOME"] = home

    from llmlab import load_model
    from llmlab.store import Store
    from llmlab.tools.evaluate import AgentEvalResult, agent_eval

    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    store = Store.open(Path(home) / "bench.db")
    result = AgentEvalResult(args.tasks)
    walls, categories = [], []
    for name in args.models.split(","):
        model = load_model(name, log=False, n_ctx=2048)
        configs = [(True, True), (False, True)] + ([(True, False)] if name == "smollm2" else [])
        for constrained, examples in configs:
            start = time.perf_counter()
            part = agent_eval(args.tasks, [model], constrained=constrained, examples=examples,
                              max_steps=args.max_steps, max_new_tokens=args.tokens, db=store)
            wall = time.perf_counter() - start
            row = part.rows[0]
            row["mode"] += "" if examples else ", no examples"
            result.rows.append(row)
            walls.append((row["model"], row["mode"], wall))
            per: dict[str, list[bool]] = {}
            for r in row["results"]:
                per.setdefault(r["category"], []).append(bool(r["success"]))
            categories.append((row["model"], row["mode"], {c: f"{sum(v)}/{len(v)}" for c, v in per.items()}))
            print(f"{row['model']} {row['mode']}: {wall:.0f} s", file=sys.stderr)
        model.close()
    print(result.table().to_markdown())
    print()
    cats = sorted({c for _, _, d in categories for c in d})
    print("| model | calls | " + " | ".join(cats) + " | wall s |")
    print("|---|---|" + "---|" * len(cats) + "---|")
    for (m, mode, d), (_, _, wall) in zip(categories, walls, strict=True):
        print(f"| {m} | {mode} | " + " | ".join(d.get(c, "-") for c in cats) + f" | {wall:.0f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
