"""Retrieval quality: dense, BM25, hybrid (and hybrid+rerank) on 39 questions over both novels.

    python bench/bench_rag_quality.py                          # dense, bm25, hybrid
    python bench/bench_rag_quality.py --rerank smollm2         # + hybrid+rerank (yes/no reranker)
    python bench/bench_rag_quality.py --answers smollm2 --judge smollm2 --limit 12   # + answers
    python bench/bench_rag_quality.py --store /tmp/novels      # keep the ingested store between runs

The questions (``bench/rag_questions.jsonl``, written for llmlab) each name evidence: a phrase that
only chunks answering the question contain, so relevance is decided by the text, not by a judge.
Both novels of ``../shared/data/corpus`` are ingested whole with the bundled MiniLM (1,769 chunks),
then ``llmlab rag eval``'s own run kind scores every retriever (ranx metrics, bootstrap intervals,
paired permutation tests) without writing to the user's store. Prints markdown tables only; the
figures in bench/RESULTS.md are copied from its output.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "data" / "corpus"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store directory to ingest into and reuse (default: a temporary one)")
    parser.add_argument("--rerank", help="reranker for hybrid+rerank (an llmlab model or ce/DIR)")
    parser.add_argument("--answers", help="also answer the questions with this model")
    parser.add_argument("--judge", help="and judge the answers' faithfulness with this model")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    args = parser.parse_args()
    if not (CORPUS / "dracula.txt").is_file():
        sys.exit(f"corpus not found: {CORPUS}")

    from llmlab import load_model
    from llmlab.rag.evaluate import Answering, RetrievalEval, read_questions, tables
    from llmlab.rag.ingestion import ingest
    from llmlab.rag.rerank import LogprobReranker, load_reranker
    from llmlab.rag.retrieval import RERANKED, RETRIEVERS
    from llmlab.runs import execute

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(args.store) if args.store else Path(tmp) / "store"
        t0 = time.perf_counter()
        report = ingest([CORPUS / "dracula.txt", CORPUS / "frankenstein.txt"], "novels", store=store)
        print(f"store: {report.chunks_total} chunks ({time.perf_counter() - t0:.0f} s to ingest or check)\n")
        questions = read_questions(HERE / "rag_questions.jsonl")[:args.limit]
        models = {}
        scoring = args.rerank if args.rerank and not args.rerank.startswith("ce/") else None
        for name in filter(None, [args.answers, args.judge, scoring]):
            models.setdefault(name, load_model(name, log=False, n_ctx=2048))
        reranker = None
        if args.rerank:
            reranker = (load_reranker(args.rerank) if args.rerank.startswith("ce/")
                        else LogprobReranker(models[args.rerank]))
        answering = (Answering(models[args.answers], RERANKED if reranker else "hybrid", 5, 64,
                               models.get(args.judge)) if args.answers else None)
        retrievers = [*RETRIEVERS, *([RERANKED] if reranker else [])]
        kind = RetrievalEval(questions, "novels", store, retrievers, "rag_questions.jsonl", rerank=reranker,
                             answering=answering)
        t0 = time.perf_counter()
        outcome = execute(kind, None)
        seconds = time.perf_counter() - t0
        for table in tables(outcome.summary, kind.header()):
            print(table.to_markdown() + "\n")
        print(f"{len(questions)} questions, {seconds:.0f} s")
        for retriever in retrievers:
            per = outcome.summary["retrievers"].get(retriever, {}).get("per_question", {}).get("hit@5", {})
            missed = sorted(q for q, v in per.items() if not v)
            print(f"- {retriever} misses at 5: {', '.join(missed) or 'none'}")


if __name__ == "__main__":
    main()
