"""Retrieval you can measure: ``llmlab rag eval QUESTIONS.jsonl`` scores every retriever on your questions.

A question file has one JSON object per line with ``question`` and any of ``relevant`` (chunk ids,
document ids or file names), ``evidence`` (a string or a list: a chunk is relevant if it contains
one, compared case-insensitively with whitespace collapsed) and ``answer`` (kept for the answer
metrics still to come); ``id`` names a question (else ``q1``, ``q2``...), other fields are kept.

It is a run like evals and probes (``runs/``): one unit per retriever x question (the top 10 chunk
ids), stored as it finishes, resumed after Ctrl-C, listed and re-opened by ``llmlab runs``. The
metrics are ranx's (hit@1/5/10, MRR@10, nDCG@10, recall@10; binary relevance), per question, with
a 95% bootstrap interval of the mean (scipy) and paired permutation tests between retrievers on
hit@5 and nDCG@10 (scipy). A test checks ranx's numbers against pytrec_eval (trec_eval).

What it gives up: a question whose evidence is in no chunk cannot be scored and is left out (and
counted: ``unanswerable``); evidence split across two chunks is in neither.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError
from ..runs.protocol import RunKind, Unit, fingerprint
from .collection import Collection
from .retrieve import RETRIEVERS, retrieve

DEPTH = 10
METRICS = {"hit@1": "hit_rate@1", "hit@5": "hit_rate@5", "hit@10": "hit_rate@10", "MRR@10": "mrr@10",
           "nDCG@10": "ndcg@10", "recall@10": "recall@10"}
TESTED = ("hit@5", "nDCG@10")  # the metrics the paired tests compare retrievers on


def read_questions(path: str | Path) -> list[dict]:
    """The question file's objects, each with an ``id``; a DataError naming the line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"question file not found: {path}")
    from ..evals.data import decode_file, numbered_json_lines

    out, seen = [], set()
    for n, item in numbered_json_lines(decode_file(path), path):
        question = item.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{path}, line {n}: needs a non-empty \"question\" string")
        if not item.get("relevant") and not item.get("evidence"):
            raise DataError(f"{path}, line {n}: give \"relevant\" (chunk or document ids, file names) or "
                            "\"evidence\" (text a relevant chunk contains)")
        item = dict(item, id=str(item.get("id") or f"q{len(out) + 1}"))
        if item["id"] in seen:
            raise DataError(f"{path}, line {n}: the id {item['id']!r} is used twice")
        seen.add(item["id"])
        out.append(item)
    if not out:
        raise DataError(f"{path} holds no questions")
    return out


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def relevant_chunks(coll: Collection, questions: list[dict]) -> dict[str, list[str]]:
    """Question id -> the ids of its relevant chunks, from ``relevant`` and ``evidence``."""
    wanted = {}
    for q in questions:
        ev = q.get("evidence") or []
        wanted[q["id"]] = ({str(r) for r in (q.get("relevant") or [])},
                           [_norm(e) for e in ([ev] if isinstance(ev, str) else ev) if str(e).strip()])
    found: dict[str, list[str]] = {q["id"]: [] for q in questions}
    for hit in coll.store.chunks():
        names = {hit.id, str(hit.metadata.get("doc_id")), Path(str(hit.metadata.get("source", ""))).name}
        text = _norm(hit.text)
        for qid, (ids, evidence) in wanted.items():
            if names & ids or any(e in text for e in evidence):
                found[qid].append(hit.id)
    return {qid: sorted(ids) for qid, ids in found.items()}


class RetrievalEval(RunKind):
    """Every retriever on every question of a file, against one collection."""

    kind = "rag"

    def __init__(self, questions: list[dict], collection: str, store=None, retrievers=RETRIEVERS,
                 source: str = ""):
        self.questions, self.collection, self.store = questions, collection, store
        self.retrievers = list(retrievers)
        coll = Collection.open(collection, store)
        self.qrels = relevant_chunks(coll, questions)
        manifest = coll.manifest()
        self.state = {"embedder": coll.meta.get("embedder"), "version": manifest.get("version"),
                      "documents": sorted(d.get("sha256", "")
                                          for d in manifest.get("documents", {}).values())}
        self.subject = f"{collection} · {Path(source).name or 'questions'}"
        self.label = f"rag eval {collection}"

    def identity(self) -> dict:
        return {"questions": fingerprint({"q": self.questions}), "collection": self.collection,
                "state": self.state, "retrievers": self.retrievers, "depth": DEPTH}

    def header(self) -> dict:
        return {"collection": self.collection, "retrievers": self.retrievers, "qrels": self.qrels,
                "questions": [{"id": q["id"], "question": q["question"]} for q in self.questions]}

    def plan(self) -> list[Unit]:
        pairs = [(r, q) for r in self.retrievers for q in self.questions]
        return [Unit(f"{r}/{q['id']}", i, (r, q)) for i, (r, q) in enumerate(pairs)]

    def run_unit(self, unit: Unit) -> dict:
        retriever, q = unit.payload
        hits = retrieve(q["question"], self.collection, retriever=retriever, k=DEPTH, store=self.store)
        return {"retriever": retriever, "id": q["id"], "ranked": [h.id for h in hits]}

    def summarise(self, results: dict[str, dict]) -> dict:
        return summarise(self.header(), results)


def summarise(header: dict, results: dict[str, dict]) -> dict:
    """Per retriever: each metric's mean, 95% interval and per-question values; paired tests."""
    import numpy as np
    from ranx import Qrels, Run, evaluate
    from scipy import stats

    qrels = {qid: dict.fromkeys(ids, 1) for qid, ids in header["qrels"].items() if ids}
    scored = sorted(qrels)
    out = {"unanswerable": sorted(q for q, ids in header["qrels"].items() if not ids), "retrievers": {},
           "tests": []}
    per: dict[str, dict[str, np.ndarray]] = {}
    for retriever in header["retrievers"]:
        ranked = {r["id"]: r["ranked"] for r in results.values() if r["retriever"] == retriever}
        # ranks as scores, so ranx keeps llmlab's order exactly (ties cannot reorder it)
        run = {qid: {cid: float(DEPTH - i) for i, cid in enumerate(ranked.get(qid, []))} or {"-": 0.0}
               for qid in scored}
        values = evaluate(Qrels(qrels), Run(run), list(METRICS.values()), return_mean=False)
        per[retriever] = {name: np.asarray(values[key], dtype=float) for name, key in METRICS.items()}
        out["retrievers"][retriever] = {name: _mean_ci(v) for name, v in per[retriever].items()}
        out["retrievers"][retriever]["per_question"] = {
            name: dict(zip(scored, map(float, v), strict=True)) for name, v in per[retriever].items()}
    names = list(per)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for metric in TESTED:
                x, y = per[a][metric], per[b][metric]
                p = 1.0 if np.array_equal(x, y) else float(stats.permutation_test(
                    (x, y), lambda u, v: np.mean(u - v), permutation_type="samples", n_resamples=9999,
                    random_state=0).pvalue)
                out["tests"].append({"a": a, "b": b, "metric": metric, "difference": float(np.mean(x - y)),
                                     "p": p})
    return out


def _mean_ci(values) -> dict:
    import numpy as np
    from scipy import stats

    mean = float(np.mean(values)) if len(values) else float("nan")
    if len(values) < 2 or np.all(values == values[0]):
        return {"mean": mean, "low": mean, "high": mean}
    ci = stats.bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                         random_state=0).confidence_interval
    return {"mean": mean, "low": float(ci.low), "high": float(ci.high)}


def tables(summary: dict, header: dict):
    """The report: one row per retriever (mean [95% CI] of each metric), and the paired tests."""
    from ..runs import Column, Table

    n = len(header["qrels"]) - len(summary["unanswerable"])
    main = Table(["retriever"] + [Column(m, justify="right") for m in METRICS],
                 title=f"retrieval on {n} questions of collection {header['collection']} (top {DEPTH})",
                 title_justify="left")
    for retriever, m in summary["retrievers"].items():
        main.add_row(retriever, *(f"{m[k]['mean']:.2f} [{m[k]['low']:.2f}, {m[k]['high']:.2f}]"
                                  for k in METRICS))
    tests = Table(["metric", "a", "b", Column("a - b", justify="right"), Column("p", justify="right")],
                  title="paired permutation tests", title_justify="left")
    for t in summary["tests"]:
        tests.add_row(t["metric"], t["a"], t["b"], f"{t['difference']:+.3f}", f"{t['p']:.3g}")
    return main, tests


def show_runs(store, rows: list[dict], fmt: str, console) -> str | None:
    """Stored retrieval evaluations re-opened (``llmlab runs show``)."""
    out = []
    for row in rows:
        for table in tables(row["summary"] or {"retrievers": {}, "tests": [], "unanswerable": []},
                            row["header"]):
            if fmt == "markdown":
                out.append(table.to_markdown())
            elif fmt == "csv":
                out.append(table.to_csv())
            else:
                console.print(table.to_rich())
    return "\n\n".join(out) + "\n" if out else None
