"""Retrieval benchmark: ingest throughput against MiniLM's own encode, query latency per retriever,
and loading the saved BM25 index against rebuilding it.

    python bench/bench_rag.py                    # both novels of ../shared/data/corpus

Ingest: `llmlab.rag.ingest` of Dracula and Frankenstein into a fresh temporary store (reading,
sentence chunking counted in MiniLM tokens, embedding, ChromaDB writes), timed whole; the floor is
sentence-transformers' own `encode` of the very same chunk texts, in the same process, with the same
batch size (what any ingest must at least spend embedding). Both run with the embedder already
loaded, so neither pays the model's load.

Queries: 20 questions about the novels, each retriever (dense, bm25, hybrid) at k=5, after one
warm-up query per retriever; p50 and p95 of the per-query time.

BM25: `bm25s.BM25.load` of the index llmlab saved beside the collection, against tokenizing and
indexing every chunk again (what a store without a saved index does per process); median of 5.

Prints markdown tables only; the figures in bench/RESULTS.md are copied from its output.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus"
QUERIES = [
    "At which hotel does Jonathan Harker stay in Bistritz?", "What is the Borgo Pass?",
    "Who is Renfield and what does he eat?", "What happened to the ship Demeter at Whitby?",
    "How many proposals did Lucy receive?", "What does Van Helsing use garlic for?",
    "Where is Castle Dracula?", "How does Mina help hunt the Count?", "Who is Quincey Morris?",
    "What are the boxes of earth for?", "Which city is Victor Frankenstein from?",
    "Where did Victor study natural philosophy?", "Who was executed for the murder of William?",
    "What books did the creature read?", "Who is Robert Walton writing to?",
    "Where did Victor build the second creature?", "What happened to Elizabeth on the wedding night?",
    "Who is Henry Clerval?", "How did the creature learn to speak?", "Where does the novel end?",
]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    if not (CORPUS / "dracula.txt").is_file():
        sys.exit(f"corpus not found: {CORPUS}")
    from llmlab.rag import bm25
    from llmlab.rag.collection import Collection, canonical_spec
    from llmlab.rag.ingestion import get_embedder, ingest
    from llmlab.rag.retrieval import RETRIEVERS, retrieve

    model = get_embedder(canonical_spec("minilm"))  # loaded once: ingest and the floor share it
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        t0 = time.perf_counter()
        report = ingest([CORPUS / "dracula.txt", CORPUS / "frankenstein.txt"], "novels", store=store)
        ingest_s = time.perf_counter() - t0
        coll = Collection.open("novels", store)
        texts = [hit.text for hit in coll.store.chunks()]
        inner = model.model  # the sentence-transformers object behind llmlab's embedder
        t0 = time.perf_counter()
        inner.encode(texts, batch_size=model.info.batch_size, normalize_embeddings=True,
                     convert_to_numpy=True)
        floor_s = time.perf_counter() - t0
        n = report.chunks_total
        print(f"\n## Ingest: both novels, {n} chunks ({os.cpu_count()} CPUs)\n")
        print("| what | seconds | chunks/s | vs encode floor |")
        print("|---|---|---|---|")
        print(f"| llmlab rag ingest (read, chunk, embed, write) | {ingest_s:.1f} | {n / ingest_s:.1f} | "
              f"{floor_s / ingest_s:.2f} |")
        print(f"| sentence-transformers encode, same chunks | {floor_s:.1f} | {n / floor_s:.1f} | 1.00 |")

        print(f"\n## Query latency over {n} chunks, k=5, {len(QUERIES)} questions\n")
        print("| retriever | p50 ms | p95 ms |")
        print("|---|---|---|")
        for retriever in RETRIEVERS:
            retrieve(QUERIES[0], "novels", retriever=retriever, k=5, store=store)  # warm-up (BM25 build)
            times = []
            for q in QUERIES:
                t0 = time.perf_counter()
                retrieve(q, "novels", retriever=retriever, k=5, store=store)
                times.append(time.perf_counter() - t0)
            print(f"| {retriever} | {1000 * pct(times, 0.5):.1f} | {1000 * pct(times, 0.95):.1f} |")

        import bm25s

        where = coll.dir / "bm25"
        loads, builds = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            bm25s.BM25.load(str(where))
            loads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fresh = bm25s.BM25()
            fresh.index(bm25._tokenize([hit.text for hit in coll.store.chunks()]), show_progress=False)
            builds.append(time.perf_counter() - t0)
        load, build = statistics.median(loads), statistics.median(builds)
        print("\n## BM25 index: load the saved one vs rebuild (median of 5)\n")
        print("| what | ms |")
        print("|---|---|")
        print(f"| bm25s.BM25.load (saved by llmlab) | {1000 * load:.1f} |")
        print(f"| read chunks + tokenize + index | {1000 * build:.1f} |")
        print(f"\nload is **{build / load:.1f}x** faster than a rebuild")


if __name__ == "__main__":
    main()
