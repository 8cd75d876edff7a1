"""RAG you can measure: ``llmlab rag eval QUESTIONS.jsonl`` scores retrievers and answers on your questions.

A question file has one JSON object per line with ``question`` and any of ``relevant`` (chunk ids,
document ids or file names), ``evidence`` (a string or a list: a chunk is relevant if it contains
one, compared case-insensitively with whitespace collapsed) and ``answer`` (a reference answer, a
string or a list); ``id`` names a question (else ``q1``, ``q2``...), other fields are kept.

It is a run like evals and probes (``runs/``): one unit per retriever x question (the top 10 chunk
ids), and with an answering model one unit per question (the answer, its reference metrics and the
judge's verdicts), stored as it finishes, resumed after Ctrl-C, listed and re-opened by ``llmlab
runs``. Retrieval metrics are ranx's (hit@1/5/10, MRR@10, nDCG@10, recall@10; binary relevance),
per question, with a 95% bootstrap interval of the mean (scipy) and paired permutation tests
between retrievers on hit@5 and nDCG@10 (scipy). A test checks ranx's numbers against pytrec_eval
(trec_eval). Answer metrics are ``answer_eval.py``'s (SQuAD exact match and F1, contained,
embedding similarity, faithfulness by a judge), each with its bootstrap interval. Each answer unit
stores what the answering model and the judge spent (``llmlab.tally``), which the report prices;
with a remote model, answers can be asked several at a time (``--concurrency``).

What it gives up: a question whose evidence is in no chunk cannot be scored and is left out (and
counted: ``unanswerable``); evidence split across two chunks is in neither.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..runs.protocol import RunKind, Unit, fingerprint
from .collection import Collection
from .retrieval import RERANKED, RETRIEVERS, check_retriever, retrieve

DEPTH = 10
METRICS = {"hit@1": "hit_rate@1", "hit@5": "hit_rate@5", "hit@10": "hit_rate@10", "MRR@10": "mrr@10",
           "nDCG@10": "ndcg@10", "recall@10": "recall@10"}
TESTED = ("hit@5", "nDCG@10")  # the metrics the paired tests compare retrievers on
ANSWER_METRICS = ("exact_match", "f1", "contains", "similarity", "faithfulness", "cited")


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
        if not item.get("relevant") and not item.get("evidence") and not item.get("answer"):
            raise DataError(f"{path}, line {n}: give \"relevant\" (chunk or document ids, file names), "
                            "\"evidence\" (text a relevant chunk contains) or \"answer\" (a reference "
                            "answer)")
        answer = item.get("answer")
        if answer is not None and not (isinstance(answer, str) and answer.strip() or isinstance(answer, list)
                                       and answer and all(isinstance(a, str) and a.strip() for a in answer)):
            raise DataError(f"{path}, line {n}: \"answer\" must be a non-empty string or list of strings")
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


@dataclass
class Answering:
    """How a run answers its questions: ``model`` (a loaded ``Model``) answers from ``retriever``'s top
    ``k``; ``judge`` (a loaded ``Model``, optional) checks each statement against the cited sources."""

    model: object
    retriever: str = "hybrid"
    k: int = 5
    max_new_tokens: int = 128
    judge: object = None

    def identity(self) -> dict:
        def name(m):
            return m and {"model": f"{m.backend}/{m.info.name}", "file": m.info.path}

        return {"model": name(self.model), "retriever": self.retriever, "k": self.k,
                "max_new_tokens": self.max_new_tokens, "judge": name(self.judge)}


class RetrievalEval(RunKind):
    """Every retriever on every question of a file, against one collection; and, with ``answering``,
    the answers."""

    kind = "rag"
    tally = True  # an answer unit stores what the answering model and the judge spent

    def __init__(self, questions: list[dict], collection: str, store=None, retrievers=RETRIEVERS,
                 source: str = "", rerank=None, answering: Answering | None = None):
        self.questions, self.collection, self.store = questions, collection, store
        # units may run in threads (--concurrency, remote models): the collection, the embedder and a
        # reranker are used one unit at a time, and only the answering model's and judge's calls overlap
        self.local = threading.Lock()
        self.retrievers = list(retrievers)
        for r in self.retrievers + ([answering.retriever] if answering else []):
            check_retriever(r, rerank)
        self.rerank, self.answering = rerank, answering
        coll = Collection.open(collection, store)
        self.qrels = relevant_chunks(coll, questions)
        manifest = coll.manifest()
        self.state = {"embedder": coll.meta.get("embedder"), "version": manifest.get("version"),
                      "documents": sorted(d.get("sha256", "")
                                          for d in manifest.get("documents", {}).values())}
        self.subject = f"{collection} · {Path(source).name or 'questions'}"
        self.label = f"rag eval {collection}"
        if answering:
            self.model = f"{answering.model.backend}/{answering.model.info.name}"

    def identity(self) -> dict:
        out = {"questions": fingerprint({"q": self.questions}), "collection": self.collection,
               "state": self.state, "retrievers": self.retrievers, "depth": DEPTH}
        if RERANKED in self.retrievers or (self.answering and self.answering.retriever == RERANKED):
            from .rerank import load_reranker

            out["rerank"] = load_reranker(self.rerank).name
        if self.answering:
            out["answering"] = self.answering.identity()
        return out

    def header(self) -> dict:
        out = {"collection": self.collection, "retrievers": self.retrievers, "qrels": self.qrels,
               "questions": [{"id": q["id"], "question": q["question"]} for q in self.questions]}
        if self.answering:
            out["answering"] = self.answering.identity()
        return out

    def plan(self) -> list[Unit]:
        # a question with no relevant chunk cannot be scored on retrieval: it is not retrieved for
        pairs = [(r, q) for r in self.retrievers for q in self.questions if self.qrels[q["id"]]]
        units = [Unit(f"{r}/{q['id']}", i, (r, q)) for i, (r, q) in enumerate(pairs)]
        if self.answering:
            units += [Unit(f"answer/{q['id']}", len(units) + i, ("answer", q))
                      for i, q in enumerate(self.questions)]
        return units

    def run_unit(self, unit: Unit) -> dict:
        retriever, q = unit.payload
        if retriever == "answer":
            return self.answer_unit(q)
        with self.local:
            hits = retrieve(q["question"], self.collection, retriever=retriever, k=DEPTH, store=self.store,
                            rerank=self.rerank)
        return {"retriever": retriever, "id": q["id"], "ranked": [h.id for h in hits]}

    def answer_unit(self, q: dict) -> dict:
        from ..config import GenerationConfig
        from .answer import parse_citations, prepare
        from .answer_eval import FaithfulnessJudge, faithfulness, reference_scores
        from .ingestion import get_embedder

        a = self.answering
        with self.local:  # what ``ask`` does, with the model's call outside the lock
            messages, context, dropped = prepare(q["question"], self.collection, a.model, k=a.k,
                                                 retriever=a.retriever, store=self.store,
                                                 max_new_tokens=a.max_new_tokens, rerank=self.rerank)
        text = a.model.generate(messages, GenerationConfig(max_new_tokens=a.max_new_tokens,
                                                           temperature=0.0)).text
        citations, invalid = parse_citations(text, len(context))
        out = {"retriever": "answer", "id": q["id"], "answer": text, "citations": citations,
               "invalid_citations": invalid, "dropped": dropped,
               "context": [h.id for h in context], "scores": {"cited": float(bool(citations))}}
        references = q.get("answer")
        if references:
            references = [references] if isinstance(references, str) else list(references)
            with self.local:
                embedder = get_embedder(Collection.open(self.collection, self.store).meta["embedder"])
                out["scores"].update(reference_scores(text, references, embedder))
        if a.judge is not None:
            verdicts = FaithfulnessJudge(a.judge).judge(text, [h.text for h in context])
            out["verdicts"] = verdicts
            out["faithfulness"] = faithfulness(verdicts)
            if out["faithfulness"]["faithfulness"] is not None:
                out["scores"]["faithfulness"] = out["faithfulness"]["faithfulness"]
        return out

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
    for retriever in header["retrievers"] if scored else []:
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
    if header.get("answering"):
        out["answers"] = summarise_answers([r for r in results.values() if r["retriever"] == "answer"])
    return out


def summarise_answers(rows: list[dict]) -> dict:
    """Each answer metric's mean and 95% interval over the questions it applies to; the judge's counts."""
    import numpy as np

    out = {"questions": len(rows), "metrics": {}, "per_question": {}}
    for metric in ANSWER_METRICS:
        values = {r["id"]: r["scores"][metric] for r in rows if metric in r["scores"]}
        if values:
            out["metrics"][metric] = dict(_mean_ci(np.asarray(list(values.values()), dtype=float)),
                                          n=len(values))
            out["per_question"][metric] = values
    judged = [r["faithfulness"] for r in rows if "faithfulness" in r]
    if judged:
        out["judge"] = {k: sum(j[k] for j in judged)
                        for k in ("statements", "supported", "unsupported", "errors")}
    out["invalid_citations"] = sum(len(r["invalid_citations"]) for r in rows)
    out["dropped"] = sum(r["dropped"] for r in rows)
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


def tables(summary: dict, header: dict) -> list:
    """The report: one row per retriever (mean [95% CI] of each metric), the paired tests, and with
    answers one row per answer metric."""
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
    report = [main, tests] if summary["tests"] else [main]  # one retriever: nothing to compare
    if not summary.get("answers"):
        return report
    a, got = header["answering"], summary["answers"]
    judge = f"; judge {a['judge']['model']}" if a.get("judge") else ""
    answers = Table(["answer metric", Column("mean [95% CI]", justify="right"),
                     Column("questions", justify="right")],
                    title=f"answers by {a['model']['model']} from {a['retriever']} top {a['k']}{judge}",
                    title_justify="left")
    for metric, m in got["metrics"].items():
        answers.add_row(metric, f"{m['mean']:.2f} [{m['low']:.2f}, {m['high']:.2f}]", str(m["n"]))
    if got.get("judge"):
        j = got["judge"]
        answers.add_row("judged statements", f"{j['supported']} supported, {j['unsupported']} not, "
                        f"{j['errors']} unparseable (errors, not scored)", str(j["statements"]))
    answers.add_row("invalid citations (dropped)", str(got["invalid_citations"]), str(got["questions"]))
    return [*report, answers]


def show_runs(store, rows: list[dict], fmt: str, console) -> str | None:
    """Stored retrieval evaluations re-opened (``llmlab runs show``)."""
    from ..tally import cost_section, show_with_cost

    empty = {"retrievers": {}, "tests": [], "unanswerable": []}
    cost, notes, _ = cost_section([u for row in rows for u in store.units(row["id"]).values()], reopened=True)
    return show_with_cost([t for row in rows for t in tables(row["summary"] or empty, row["header"])], cost,
                          notes, fmt, console)
