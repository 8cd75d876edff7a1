"""RAG on real novels: Frankenstein and the first 200,000 characters of Dracula, ingested once with
the bundled MiniLM into a temporary store (conftest's session fixture ``novels``), then retrieved
from with questions written for them and answered by SmolLM2 through the CLI.

Dracula is cut to its first chapters (Harker at the castle, Lucy's letters, Renfield, the Demeter)
so the one ingest stays near a minute on two cores; every question below has its evidence there.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from llmlab.rag.collection import Collection
from llmlab.rag.ingestion import ingest
from llmlab.rag.retrieval import retrieve

# (question, evidence strings: a hit is a top-5 chunk containing any of them)
QUESTIONS = [
    ("At which hotel does Jonathan Harker stay in Bistritz?", ["Golden Krone"]),
    ("Through which mountain pass does Harker travel to meet the Count's carriage?", ["Borgo Pass"]),
    ("What word does Dr. Seward coin for his patient who eats flies, spiders and birds?", ["zoöphagous"]),
    ("What was the name of the Russian ship that ran aground at Whitby in the storm?", ["Demeter"]),
    ("How many proposals of marriage did Lucy receive in one day?", ["three proposals"]),
    ("Which city is Victor Frankenstein's family from?", ["Geneva"]),
    ("Which books did the creature find in a leather portmanteau?",
     ["Paradise Lost", "Sorrows of Werter", "Plutarch"]),
    ("At which university did Victor study natural philosophy?", ["Ingolstadt"]),
    ("Who was executed for the murder of little William?", ["Justine"]),
    ("Which professor mocked Victor for having read Cornelius Agrippa and Paracelsus?", ["Krempe"]),
    ("On which remote Scottish islands did Victor begin making a second creature?", ["Orkney"]),
    ("What is the name of the explorer who writes letters to his sister Mrs. Saville?", ["Walton"]),
]


def test_both_novels_are_ingested_in_token_counted_chunks(novels):
    report = novels["report"]
    assert sorted(report.added) == sorted(str(p.resolve()) for p in novels["docs"].iterdir())
    assert not report.failed
    coll = Collection.open("novels", novels["store"])
    chunks = list(coll.store.chunks())
    assert len(chunks) == report.chunks_total == coll.store.count() > 500
    assert len({c.id for c in chunks}) == len(chunks)
    assert max(c.metadata["tokens"] for c in chunks) <= 200
    # the bound is the embedder's own: re-tokenizing a chunk gives its recorded count (+- boundary)
    from llmlab.rag.ingestion import get_embedder

    model = get_embedder("minilm")
    sample = chunks[::50]
    counts = model.count_tokens([c.text for c in sample])
    assert all(abs(n - c.metadata["tokens"]) <= 2 for n, c in zip(counts, sample, strict=True))
    assert all(n + model.special_tokens <= model.info.max_seq_length for n in counts)
    assert coll.meta["embedder"] == "minilm" and coll.meta["dimension"] == 384


def test_chunk_offsets_reproduce_the_source_and_neighbours_overlap(novels):
    coll = Collection.open("novels", novels["store"])
    by_doc: dict[str, list] = {}
    for c in coll.store.chunks():
        by_doc.setdefault(c.metadata["source"], []).append(c)
    for source, chunks in by_doc.items():
        text = open(source, encoding="utf-8").read()
        bad = [c.id for c in chunks if text[c.metadata["start"]:c.metadata["end"]] != c.text]
        assert not bad, f"{len(bad)} chunks of {source} do not match their offsets"
        chunks.sort(key=lambda c: c.metadata["chunk"])
        pairs = [(a.metadata, b.metadata) for a, b in zip(chunks, chunks[1:], strict=False)]
        overlapping = sum(b["start"] < a["end"] for a, b in pairs)
        # overlap is whole sentences: after a sentence longer than 30 tokens there is none
        assert overlapping > 0.5 * (len(chunks) - 1)
        # nothing between chunks is lost: each starts at or before the previous one's end (+ space)
        assert all(not text[a["end"]:b["start"]].strip() for a, b in pairs if b["start"] > a["end"])


def test_reingesting_unchanged_files_does_nothing(novels):
    coll = Collection.open("novels", novels["store"])
    before = coll.manifest()
    report = ingest([novels["docs"]], "novels", store=novels["store"])
    assert report.chunks_added == 0 and len(report.unchanged) == 2 and not report.added
    assert coll.manifest() == before
    assert coll.store.count() == novels["report"].chunks_total


def _hits_at_5(store, retriever):
    hits = []
    for question, evidence in QUESTIONS:
        found = retrieve(question, "novels", retriever=retriever, k=5, store=store)
        hits.append(any(e in h.text for h in found for e in evidence))
    return hits


def test_hybrid_retrieval_finds_the_evidence(novels):
    scores = {r: _hits_at_5(novels["store"], r) for r in ("dense", "bm25", "hybrid")}
    rates = {r: sum(h) / len(h) for r, h in scores.items()}
    print("\nhit@5: " + ", ".join(f"{r} {v:.2f}" for r, v in rates.items()))
    for r, h in scores.items():
        missed = [q for (q, _), ok in zip(QUESTIONS, h, strict=True) if not ok]
        print(f"  {r} missed: {missed}")
    # measured (BM25 with stemming): dense 9/12, bm25 11/12, hybrid 10/12; all three miss the creature's
    # books (the chunk that finds the "leathern portmanteau" ends one sentence before they are named),
    # and hybrid also Ingolstadt, which dense misses: fusion follows the weaker list there, as on the
    # 39 questions of bench/RESULTS.md, so hybrid is held to dense's level and 10 of 12, not to BM25's
    assert sum(scores["hybrid"]) >= 10 and sum(scores["bm25"]) >= 10
    assert rates["hybrid"] >= rates["dense"]


def test_retrieved_chunks_are_ranked_with_their_place(novels):
    found = retrieve("Golden Krone hotel in Bistritz", "novels", retriever="hybrid", k=5,
                     store=novels["store"])
    assert [h.rank for h in found] == [1, 2, 3, 4, 5]
    assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)
    assert found[0].source.endswith("dracula.txt") and found[0].page is None
    assert found[0].end > found[0].start
    bm = retrieve("Golden Krone", "novels", retriever="bm25", k=3, store=novels["store"])
    assert "Golden Krone" in bm[0].text


def test_bm25_index_is_persisted_and_rebuilt_only_after_a_change(novels):
    from llmlab.rag import bm25

    coll = Collection.open("novels", novels["store"])
    retrieve("Borgo Pass", "novels", retriever="bm25", k=1, store=novels["store"])
    stamp_file = coll.dir / "bm25" / "stamp.json"
    stamp = json.loads(stamp_file.read_text())
    assert stamp == {"version": coll.manifest()["version"], "count": coll.store.count(),
                     "tokens": bm25.TOKENIZER}
    built = stamp_file.stat().st_mtime_ns
    bm25._LOADED.clear()  # as a new process would: read from disk, not rebuilt
    retrieve("Borgo Pass", "novels", retriever="bm25", k=1, store=novels["store"])
    assert stamp_file.stat().st_mtime_ns == built


def test_rag_retrieve_and_ask_through_the_cli(novels, smollm2):
    env_store = str(novels["store"])
    out = subprocess.run([sys.executable, "-m", "llmlab", "rag", "retrieve", "Borgo Pass", "-c", "novels",
                          "--store", env_store, "-r", "bm25", "-k", "2"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1. [") and "dracula.txt, chars " in out.stdout
    out = subprocess.run([sys.executable, "-m", "llmlab", "rag", "ask", "Where did Harker stay in Bistritz?",
                          "-m", "smollm2", "-c", "novels", "--store", env_store, "-k", "3",
                          "--max-new-tokens", "60"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    answer, _, sources = out.stdout.partition("\nSources:")
    assert answer.strip(), "no answer was printed"
    lines = [line for line in sources.splitlines() if line.startswith("[")]
    assert lines and all(re.match(r"\[\d+\] /.*\.txt, chars \d+-\d+$", line) for line in lines), sources


def test_ask_fits_the_context_and_says_what_it_dropped(novels, smollm2):
    from llmlab.errors import RagError
    from llmlab.rag.answer import ask, fit

    hits = retrieve("What did the creature read?", "novels", k=20, store=novels["store"])
    messages, dropped = fit(smollm2, "What did the creature read?", hits, 256)
    assert 0 < dropped < 20
    assert smollm2.count_tokens(messages) + 256 <= smollm2.info.context_length
    assert f"({dropped} more retrieved excerpts were left out because they did not fit" in messages[1].content
    with pytest.raises(RagError, match="not even the best excerpt fits"):  # the question alone fits
        fit(smollm2, "What did the creature read?", hits, smollm2.info.context_length - 150)
    with pytest.raises(RagError, match="the question is too long"):
        fit(smollm2, "What did the creature read?", hits, smollm2.info.context_length - 50)
    answer = ask("What did the creature read?", "novels", model=smollm2, k=20, store=novels["store"],
                 max_new_tokens=40)
    assert answer.dropped == fit(smollm2, "What did the creature read?", hits, 40)[1] <= dropped
    assert len(answer.context) == 20 - answer.dropped and answer.text.strip()
    assert all(1 <= n <= len(answer.context) for n in answer.citations)
    assert [n for n, _ in answer.sources] == answer.citations


# --- rag eval: retrieval measured as a run ---------------------------------------------------------

@pytest.fixture(scope="module")
def questions(novels, tmp_path_factory):
    path = tmp_path_factory.mktemp("rag-eval") / "questions.jsonl"
    lines = [json.dumps({"id": f"n{i}", "question": q, "evidence": ev, "note": "kept"})
             for i, (q, ev) in enumerate(QUESTIONS, 1)]
    lines.append(json.dumps({"id": "who", "question": "Who is Renfield?", "relevant": ["dracula.txt"]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_retrieval_metrics_equal_trec_eval_on_the_same_runs(novels, questions, tmp_path):
    import pytrec_eval

    from llmlab.rag.evaluate import RetrievalEval, read_questions
    from llmlab.runs import execute
    from llmlab.store import Store

    kind = RetrievalEval(read_questions(questions), "novels", novels["store"])
    assert all(kind.qrels[q] for q in kind.qrels)  # every question's evidence is in some chunk
    store = Store.open(tmp_path / "runs.db")
    try:
        outcome = execute(kind, store)
    finally:
        store.close()
    qrels = {q: dict.fromkeys(ids, 1) for q, ids in kind.qrels.items()}
    names = {"hit@1": "success_1", "hit@5": "success_5", "hit@10": "success_10", "MRR@10": "recip_rank",
             "nDCG@10": "ndcg_cut_10", "recall@10": "recall_10"}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"success.1,5,10", "recip_rank", "ndcg_cut.10",
                                                       "recall.10"})
    for retriever, got in outcome.summary["retrievers"].items():
        ranked = {r["id"]: r["ranked"] for r in outcome.results.values() if r["retriever"] == retriever}
        ref = evaluator.evaluate({q: {c: float(10 - i) for i, c in enumerate(ids)}
                                  for q, ids in ranked.items()})
        for metric, trec in names.items():
            assert got["per_question"][metric] == pytest.approx({q: ref[q][trec] for q in ref}, abs=1e-9), \
                (retriever, metric)
        assert got["hit@5"]["low"] <= got["hit@5"]["mean"] <= got["hit@5"]["high"]
    hybrid, dense = outcome.summary["retrievers"]["hybrid"], outcome.summary["retrievers"]["dense"]
    assert hybrid["hit@5"]["mean"] >= dense["hit@5"]["mean"]
    assert {(t["a"], t["b"]) for t in outcome.summary["tests"]} == {
        ("dense", "bm25"), ("dense", "hybrid"), ("bm25", "hybrid")}


def test_rag_eval_is_a_run_that_resumes_and_reopens(novels, questions, tmp_path):
    env = {"LLMLAB_DB": str(tmp_path / "runs.db"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    import os

    env = dict(os.environ, **env)
    args = [sys.executable, "-m", "llmlab", "rag", "eval", str(questions), "-c", "novels", "--store",
            str(novels["store"]), "--out", str(tmp_path / "out")]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "nDCG@10" in first.stdout and "hybrid" in first.stdout and "paired permutation" in first.stdout
    report = (tmp_path / "out" / "report.md").read_text()
    per_question = (tmp_path / "out" / "per_question.csv").read_text().splitlines()
    assert per_question[0].startswith("question,retriever,hit@1") and len(per_question) == 1 + 3 * 13
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert "39 units resumed" in again.stderr and again.stdout == first.stdout
    run_id = re.search(r"stored as rag run (\d+)", first.stderr).group(1)
    shown = subprocess.run([sys.executable, "-m", "llmlab", "runs", "show", run_id, "--format", "markdown"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0 and shown.stdout.strip() == report.strip()
    listed = subprocess.run([sys.executable, "-m", "llmlab", "runs"], capture_output=True, text=True, env=env)
    assert " rag " in listed.stdout


def test_a_bad_question_file_is_one_line(tmp_path):
    from llmlab.errors import DataError
    from llmlab.rag.evaluate import read_questions

    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok?", "evidence": "x"}\n{"question": ""}\n')
    with pytest.raises(DataError, match=r"q.jsonl, line 2: needs a non-empty \"question\""):
        read_questions(path)
    path.write_text('{"question": "no evidence"}\n')
    with pytest.raises(DataError, match="line 1: give \"relevant\""):
        read_questions(path)
    path.write_text('{"question": "a", "evidence": "x"\n')
    with pytest.raises(DataError, match="q.jsonl line 1 is not valid JSON"):
        read_questions(path)
