"""The multiple-choice scoring path beside lm-evaluation-harness, in one run: items/s and agreement.

The data is real: the lesson's 100 film reviews (``../shared/data/lesson/sentiment_film_data.tsv``)
written as an ARC-format file ("Question: What is the sentiment of this review? <review>" with the
choices positive / neutral / negative), plus every format's llmlab sample. Each is scored by

    lm-eval hf       lm-evaluation-harness's own HF backend, batch size 1 (its default)
    llmlab hf        ``hf/smollm2``: the same float32 weights and backend
    llmlab llamacpp  ``smollm2``: the bundled Q4_1 GGUF on llama.cpp (not the same weights)

and the table gives items/s (each model loaded once, before timing), accuracy, and
the largest per-choice log-likelihood difference from the harness.

    HF_HUB_OFFLINE=1 python bench/bench_mc.py [--limit N] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

FILM = Path(__file__).resolve().parents[2] / "shared" / "data" / "lesson" / "sentiment_film_data.tsv"


def film_arc(folder: Path, limit: int | None) -> Path:
    with FILM.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))[:limit]
    labels = ["positive", "neutral", "negative"]
    path = folder / "film_arc.jsonl"
    path.write_text("".join(json.dumps({
        "id": f"film-{n + 1}", "question": f"What is the sentiment of this review? {r['text'].strip()}",
        "choices": {"text": labels, "label": ["A", "B", "C"]}, "answerKey": "ABC"[labels.index(r["label"])]})
        + "\n" for n, r in enumerate(rows)))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="film reviews to use (default all 100)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from llmlab import load_model
    from llmlab.benchmarks import BENCHMARKS, run_benchmark, sample_file
    from llmlab.benchmarks.reference import run_lmeval, task_yaml
    from llmlab.models.registry import BUNDLED, load_options
    from llmlab.store import Store

    folder = Path(tempfile.mkdtemp())
    sets = {"film (ARC format)": ("arc", film_arc(folder, args.limit))}
    sets.update({f"{b} sample": (b, sample_file(b)) for b in BENCHMARKS})
    tasks = {}
    for n, (label, (benchmark, path)) in enumerate(sets.items()):
        tasks[label] = f"t{n}"
        task_yaml(benchmark, path, f"t{n}", folder)
    gguf = BUNDLED["smollm2"].path()
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(gguf.parent), gguf_file=gguf.name, dtype="float32", device="cpu", batch_size=1)
    ref, ref_seconds = {}, {}
    for label, task in tasks.items():  # one task per call, so each is timed on its own
        start = time.perf_counter()
        ref[label] = run_lmeval(lm, None, folder, [task])[task]
        ref_seconds[label] = time.perf_counter() - start
    del lm

    store = Store.open(folder / "runs.db")
    rows = []
    for backend in ("hf/smollm2", "smollm2"):
        model = load_model(backend, log=False, **load_options(threads=args.threads))
        for label, (benchmark, path) in sets.items():
            start = time.perf_counter()
            run = run_benchmark(path, benchmark, [model], db=store, fresh=True).runs[0]
            seconds = time.perf_counter() - start
            pairs = zip((i["lls"] for i in run.items), ref[label]["lls"], strict=True)
            diff = max(abs(a - b) for x, y in pairs for a, b in zip(x, y, strict=True))
            acc = run.summary["metrics"]["acc"]["value"]
            rows.append((label, backend, run.summary["n"], seconds, acc, diff))
        model.close()
    print(f"lm-eval {__import__('lm_eval').__version__}, {args.threads} threads; each system's model is "
          "loaded once, before timing\n")
    print("| data | system | items | items/s | × lm-eval | acc | max abs Δ loglik vs lm-eval |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label in sets:
        n = len(ref[label]["lls"])
        ref_rate = n / ref_seconds[label]
        ref_acc = ref[label]["metrics"]["acc"]
        print(f"| {label} | lm-eval hf | {n} | {ref_rate:.1f} | 1.00 | {ref_acc:.3f} | 0 |")
        for lab, backend, items, seconds, acc, diff in rows:
            if lab == label:
                rate = items / seconds
                print(f"| {label} | llmlab {backend} | {items} | {rate:.1f} | {rate / ref_rate:.2f} "
                      f"| {acc:.3f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
