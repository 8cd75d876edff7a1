"""Evaluation benchmark: `score` vs `generate` throughput, and the best accuracy a recipe reaches.

    python bench/bench_eval.py                 # throughput: score vs generate (lesson settings)
    python bench/bench_eval.py --search        # + accuracy of every recipe on the same file
    python bench/bench_eval.py --prefix        # Gemma 3: few-shot vs zero-shot `score` (prefix reuse)

Throughput: the lesson's 100-row file, the bundled SmolLM2-135M (llama.cpp), the lesson's prompt
(zero-shot strategy), `generate` greedy with at most 10 new tokens, `score` on the same prompts. Both
run through `llmlab.evaluate` in the same process, interleaved in blocks of rows (alternating which
goes first) so that a busy machine slows both alike; raw llama-cpp-python `create_completion` with
the same settings runs in the same blocks as the reference for what generation costs. Examples/s is
items / summed item time (what the report's table shows); wall time per method is printed too.

Search: every built-in strategy x method, plus a few user-style task files, on all 100 rows, then
the MiniLM baseline; a markdown table sorted by accuracy. Runs are kept in --db, so an interrupted
search resumes.

Prefix: Gemma 3 270M (a sliding-window model) scoring the same file with the zero-shot and the
few-shot strategy, loaded as llmlab loads it (full-size sliding-window cache, so the few-shot
examples stay in the KV cache between rows), against the naive reference of the same few-shot
scoring from scratch on every row (llama.cpp's default small sliding-window cache, which cannot keep
a prefix), interleaved in blocks as above.

Prints markdown tables only; the figures in bench/RESULTS.md are copied from its output.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lesson" / "sentiment_film_data.tsv"
LESSON_1B = 0.59  # llama3.2:1b via Ollama, the lesson's published accuracy on this file


def throughput(model, frame, db, block: int) -> None:
    from llmlab import evaluate
    from llmlab.tasks import load_task, prompt_for

    task = load_task("sentiment")
    strategy = task.strategy("zero-shot")
    # the floor of any method that reads each item: llama-cpp-python evaluating its prompt (with the
    # shared prefix cached) and giving one token
    floor = "raw prompt evaluation only (max_tokens=1)"
    seconds = {"score": 0.0, "generate": 0.0, "raw llama-cpp-python": 0.0, floor: 0.0}
    wall = dict.fromkeys(seconds, 0.0)
    correct = dict.fromkeys(seconds, 0)
    for start in range(0, len(frame), block):
        rows = frame.iloc[start:start + block]
        order = ["generate", "score", "raw llama-cpp-python", floor]
        if (start // block) % 2:
            order.reverse()
        for method in order:
            t0 = time.perf_counter()
            if method in ("raw llama-cpp-python", floor):
                for text in rows["text"]:
                    t1 = time.perf_counter()
                    model.llm.create_completion(model.prompt_text(prompt_for(model, task, strategy, text)),
                                                max_tokens=10 if method != floor else 1,
                                                temperature=0.0, top_k=1)
                    seconds[method] += time.perf_counter() - t1
            else:
                result = evaluate(rows, task, [model], [method], db=db, fresh=True)
                seconds[method] += float(result.predictions["seconds"].sum())
                correct[method] += int(result.predictions["correct"].sum())
            wall[method] += time.perf_counter() - t0
    n = len(frame)
    print(f"\n## Throughput on {DATA.name} ({n} rows, SmolLM2-135M Q4_1, llama.cpp, "
          f"{os.cpu_count()} CPUs)\n")
    print("| method | examples/s | wall s | accuracy | vs generate |")
    print("|---|---|---|---|---|")
    for method in seconds:
        acc = f"{correct[method] / n:.2f}" if method in ("score", "generate") else "-"
        print(f"| {method} | {n / seconds[method]:.2f} | {wall[method]:.1f} | {acc} | "
              f"{seconds['generate'] / seconds[method]:.2f}x |")
    print(f"\nscore / generate examples/s ratio: **{seconds['generate'] / seconds['score']:.2f}**; "
          f"the most any method reading each prompt could reach: "
          f"{seconds['generate'] / seconds[floor]:.2f}")


def prefix(frame, db, block: int) -> None:
    from llmlab import evaluate
    from llmlab.models.llamacpp import LlamaCppModel
    from llmlab.models.registry import BUNDLED

    path = BUNDLED["gemma3-270m"].path()
    # one copy per run, each with its own KV cache, as a real eval has: interleaved blocks on one copy
    # would make every block's first row recompute the other strategy's prefix
    zero = LlamaCppModel(path, name="gemma3-270m", n_ctx=2048)                   # as llmlab loads it
    kept = LlamaCppModel(path, name="gemma3-270m", n_ctx=2048)
    scratch = LlamaCppModel(path, name="gemma3-270m", n_ctx=2048, swa_full=False)  # the naive reference
    assert kept.reuse_scoring_prefix and not scratch.reuse_scoring_prefix
    runs = {"zero-shot (kept prefix)": (zero, "zero-shot"), "few-shot (kept prefix)": (kept, "few-shot"),
            "few-shot (from scratch)": (scratch, "few-shot")}
    seconds = dict.fromkeys(runs, 0.0)
    correct = dict.fromkeys(runs, 0)
    for start in range(0, len(frame), block):
        rows = frame.iloc[start:start + block]
        order = list(runs) if (start // block) % 2 == 0 else list(reversed(runs))
        for name in order:
            model, strategy = runs[name]
            result = evaluate(rows, "sentiment", [model], ["score"], [strategy], db=db, fresh=True)
            seconds[name] += float(result.predictions["seconds"].sum())
            correct[name] += int(result.predictions["correct"].sum())
    n = len(frame)
    print(f"\n## Gemma 3 270M `score` on {DATA.name} ({n} rows, Q4_K_M, llama.cpp, {os.cpu_count()} CPUs)\n")
    print("| strategy | examples/s | accuracy |")
    print("|---|---|---|")
    for name in runs:
        print(f"| {name} | {n / seconds[name]:.2f} | {correct[name] / n:.2f} |")
    zero, few = seconds["zero-shot (kept prefix)"], seconds["few-shot (kept prefix)"]
    print(f"\nfew-shot / zero-shot examples/s: **{zero / few:.2f}** (target 0.8); kept prefix / from "
          f"scratch on few-shot: {seconds['few-shot (from scratch)'] / few:.2f}x")
    for model in (zero, kept, scratch):
        model.close()


# user-style task files for the search: the same labels, other wordings (tasks are data)
VARIANTS = {
    "review-words": """
name: sentiment-review-words
labels:
  positive: [good]
  negative: [bad]
  neutral: [mixed]
instruction: Was this review good, bad or mixed?
examples: {examples}
strategies:
  zero-shot:
    user: "Review: {{{{ text }}}}\\nWas this review good, bad or mixed?"
    continuation: "{{{{ {{'positive': 'Good', 'negative': 'Bad', 'neutral': 'Mixed'}}[label] }}}}"
  few-shot:
    user: "Review: {{{{ text }}}}\\nWas this review good, bad or mixed?"
    answer: "{{{{ {{'positive': 'Good', 'negative': 'Bad', 'neutral': 'Mixed'}}[label] }}}}"
    continuation: "{{{{ {{'positive': 'Good', 'negative': 'Bad', 'neutral': 'Mixed'}}[label] }}}}"
""",
}


def search(model, frame, db, out_dir: Path) -> None:
    import yaml

    from llmlab import evaluate
    from llmlab.tasks import load_task

    base = load_task("sentiment")
    methods = ("score", "calibrate", "batch-calibrate")
    recipes = [("sentiment", s, m) for s in base.strategies for m in methods]
    recipes += [("sentiment", s, "generate") for s in ("zero-shot", "few-shot", "structured")]
    examples = yaml.safe_dump([{"text": e["text"], "label": e["label"]} for e in base.examples],
                              default_flow_style=True, width=10_000).strip()
    for name, text in VARIANTS.items():
        path = out_dir / f"{name}.yaml"
        path.write_text(text.format(examples=examples))
        recipes += [(str(path), s, m) for s in ("zero-shot", "few-shot") for m in methods]
    rows = []
    for task, strategy, method in recipes:
        t0 = time.perf_counter()
        result = evaluate(frame, task, [model], [method], [strategy], db=db)
        row = result.table.iloc[0]
        rows.append((Path(task).stem, strategy, method, row, time.perf_counter() - t0))
        print(f"  {Path(task).stem} {strategy} {method}: {row.accuracy:.2f}", file=sys.stderr, flush=True)
    baseline = evaluate(frame, "sentiment", [], baseline=True, db=db).table.iloc[0]
    rows.append(("minilm+logreg (5-fold)", "-", "supervised", baseline, 0.0))
    rows.sort(key=lambda r: -r[3].accuracy)
    print(f"\n## Accuracy of every recipe on {DATA.name} (SmolLM2-135M; lesson's llama3.2:1b: "
          f"{LESSON_1B})\n")
    print("| task file | strategy | method | accuracy [95% CI] | macro-F1 | unparsed |")
    print("|---|---|---|---|---|---|")
    for task, strategy, method, r, _ in rows:
        print(f"| {task} | {strategy} | {method} | {r.accuracy:.2f} [{r.accuracy_low:.2f}, "
              f"{r.accuracy_high:.2f}] | {r.macro_f1:.2f} | {r.unparsed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--block", type=int, default=10, help="rows per interleaved block")
    parser.add_argument("--search", action="store_true", help="also search recipes for accuracy")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--prefix", action="store_true", help="only the Gemma few-shot prefix-reuse run")
    parser.add_argument("--db", type=Path, help="keep runs here (resumes an interrupted search)")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"data not found: {args.data}")
    from llmlab import load_model
    from llmlab.evals import load_dataset
    from llmlab.tasks import load_task

    frame = load_dataset(args.data, load_task("sentiment")).frame.rename(columns={"gold": "label"})
    if args.prefix:
        with tempfile.TemporaryDirectory() as tmp:
            prefix(frame, Path(tmp) / "prefix.db", args.block)
        return
    model = load_model("smollm2", log=False, n_ctx=2048)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.db"
        if not args.no_throughput:
            throughput(model, frame, Path(tmp) / "throughput.db", args.block)
        if args.search:
            search(model, frame, db, Path(tmp))
    model.close()


if __name__ == "__main__":
    main()
