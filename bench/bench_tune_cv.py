"""Does LoRA tuning make SmolLM2-135M good at the lesson's film sentiment? Cross-validated, beside the
other ways to the same task, in one run; and does training on synthetic data help on the real data?

Part ``cv``: ``llmlab tune --kfold 5`` on ``../shared/data/lesson/sentiment_film_data.tsv`` (default
settings: LoRA r=8 on q/k/v/o, 4 epochs at most with early stopping on each fold's own held-out
rows, zero-shot prompt, ``generate`` asked exactly what was trained), so each of the 100 rows is
answered by an adapter that never saw it. Beside it, in the same run and on the same rows: the base
model with the same prompt and method, the best prompting recipe found by ``bench_eval.py``'s search
(review-words task, few-shot, batch-calibrate, SmolLM2 on llama.cpp; 0.77 there) and the supervised
baseline (MiniLM embeddings + logistic regression, 5-fold with the same seed and so the same folds).

Part ``synthetic``: ``llmlab generate-data`` has SmolLM2 (llama.cpp) write N labelled film-review-ish
texts, ``llmlab tune`` trains on them (nothing real), and base and tuned answer all 100 real rows.

    HF_HUB_OFFLINE=1 python bench/bench_tune_cv.py [--part cv|synthetic|all] [--k 5] [--n 100] [--out DIR]

Runs are stored in ``OUT/runs.db`` and the adapters kept in ``OUT``: the same command with the same
``--out`` resumes (finished folds are not retrained).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILM = HERE.parents[1] / "shared" / "data" / "lesson" / "sentiment_film_data.tsv"


def row(name: str, how: str, acc: float, ci, seconds: float | None = None) -> str:
    took = f"{seconds / 60:.1f} min" if seconds else "-"
    return f"| {name} | {how} | {acc:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] | {took} |"


def part_cv(args, out: Path, store) -> None:
    import yaml

    from llmlab import evaluate
    from llmlab.models.registry import load_model
    from llmlab.tasks import load_task
    from llmlab.tune.kfold import kfold

    sys.path.insert(0, str(HERE))
    from bench_eval import VARIANTS  # the search's task file, written out as it did

    lines = ["| system | how | accuracy [95% CI] | took |", "|---|---|---|---|"]
    base = load_model("hf/smollm2", log=False)
    start = time.perf_counter()
    cv = kfold(FILM, "hf/smollm2", out / "cv", args.k, store=store, loaded=base, progress=True)
    took = time.perf_counter() - start
    base.close()
    cv.print()
    s = cv.summary()
    lines.append(row("SmolLM2-135M base", "zero-shot, generate", s["base"]["accuracy"], s["base"]["ci"]))
    lines.append(row(f"SmolLM2-135M + LoRA ({args.k}-fold)", "zero-shot, generate, tuned on the other folds",
                     s["tuned"]["accuracy"], s["tuned"]["ci"], took))

    shots = load_task("sentiment").examples
    examples = yaml.safe_dump([{"text": e["text"], "label": e["label"]} for e in shots],
                              default_flow_style=True, width=10_000).strip()
    task_file = out / "review-words.yaml"
    task_file.write_text(VARIANTS["review-words"].format(examples=examples))
    start = time.perf_counter()
    best = evaluate(FILM, str(task_file), models=["smollm2"], recipes=[("few-shot", "batch-calibrate")],
                    db=store, progress=True)
    m = next(iter(best.metrics.values()))
    lines.append(row("SmolLM2-135M, best prompt", "review-words few-shot, batch-calibrate", m["accuracy"],
                     m["accuracy_ci"], time.perf_counter() - start))
    start = time.perf_counter()
    baseline = evaluate(FILM, "sentiment", models=[], baseline=True, db=store)
    m = next(iter(baseline.metrics.values()))
    lines.append(row("MiniLM + logistic regression", "5-fold, supervised", m["accuracy"], m["accuracy_ci"],
                     time.perf_counter() - start))
    print("\n".join(lines))
    print(f"\nMcNemar base vs tuned: p = {s['mcnemar_p']:.3g} (only base right {s['only_base']}, "
          f"only tuned right {s['only_tuned']})")
    tuned_right = [p == g for p, g in zip(cv.tuned, cv.gold, strict=True)]
    from llmlab.evals.metrics import mcnemar

    for name, result in (("best prompt", best), ("MiniLM baseline", baseline)):
        other = next(iter(result.correct.values()))
        t = mcnemar(tuned_right, other)
        print(f"McNemar tuned vs {name}: p = {t['p_value']:.3g} (only tuned right {t['only_a']}, "
              f"only {name} right {t['only_b']})")


def part_synthetic(args, out: Path, store) -> None:
    from llmlab import evaluate
    from llmlab.models.registry import load_model
    from llmlab.tune import tune
    from llmlab.tune.synthetic import generate_data

    synth = out / "synthetic.jsonl"
    start = time.perf_counter()
    report = generate_data("sentiment", args.n, "smollm2", synth, seed=0, progress=True, log=False)
    report.print()
    made = time.perf_counter() - start
    base = load_model("hf/smollm2", log=False)
    try:
        start = time.perf_counter()
        result = tune(synth, "hf/smollm2", out / "synthetic-adapter", task="sentiment", store=store,
                      loaded=base, progress=True)
        trained = time.perf_counter() - start
        result.print()
        tuned = load_model(f"hf/smollm2+{result.out}", log=False)
        try:
            real = evaluate(FILM, "sentiment", models=[base, tuned], methods=["generate"], db=store,
                            progress=True)
        finally:
            tuned.close()
    finally:
        base.close()
    real.print()
    print(f"\nsynthetic rows: {report.total} kept; written in {made / 60:.1f} min, trained in "
          f"{trained / 60:.1f} min")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("cv", "synthetic", "all"), default="all")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--n", type=int, default=100, help="synthetic rows to write")
    ap.add_argument("--out", type=Path, default=None, help="adapters, runs.db (default: a temporary folder)")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-tune-cv-"))
    out.mkdir(parents=True, exist_ok=True)
    from llmlab.store import Store

    store = Store.open(out / "runs.db")
    try:
        if args.part in ("cv", "all"):
            part_cv(args, out, store)
        if args.part in ("synthetic", "all"):
            part_synthetic(args, out, store)
    finally:
        store.close()


if __name__ == "__main__":
    main()
