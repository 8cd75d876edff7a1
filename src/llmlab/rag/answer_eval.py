"""How good is a grounded answer: against a reference answer, and against the sources it cites.

Reference metrics, no LLM needed (citations ``[n]`` are removed from the answer first):

    exact_match, f1   SQuAD v1.1's (torchmetrics' ``squad``: lower case, no punctuation or articles;
                      F1 over tokens), the best over the question's reference answers
    contains          a normalized reference appears inside the normalized answer (a long answer that
                      says the right thing gets 1 here and a low exact match)
    similarity        cosine similarity of the answer's and the reference's embeddings (the
                      collection's embedder), the best over references

Faithfulness, with a judge model: the answer is cut into statements (sentences); each is put to the
judge with the sources it cites (all the answer's sources when it cites none) and the question "Is
the statement supported by the sources? Answer yes or no." A reply that starts with neither yes nor
no, nor says "supported" or "not supported" in its first sentence, is an *error*, counted apart and
never scored (LLM-judged RAG metrics with small local judges commonly turn such replies into
numbers). Faithfulness is supported / (supported + unsupported) over one answer's statements.

What it gives up: statements are sentences found by a regular expression, not atomic claims; a
judge sees sources only, not the conversation; a model judging its own answers is allowed and is
lenient.
"""

from __future__ import annotations

import re

from .answer import _CITATION

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_VERDICT = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
# "The statement is (not) supported by the sources": a verdict in words, read in the first sentence
_WORDED = re.compile(r"\b(not supported|unsupported|supported)\b", re.IGNORECASE)
JUDGE_SYSTEM = "You check whether a statement is supported by the given sources. Reply with yes or no."


def strip_citations(text: str) -> str:
    return re.sub(r"\s+", " ", _CITATION.sub("", text)).strip()


def normalize(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    import string

    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def reference_scores(answer: str, references: list[str], embedder=None) -> dict:
    """``exact_match``, ``f1``, ``contains`` in [0, 1], and ``similarity`` when an embedder is given."""
    plain = strip_citations(answer)
    out = {**squad_scores(plain, references),
           "contains": float(any(normalize(r) and normalize(r) in normalize(plain) for r in references))}
    if embedder is not None:
        import numpy as np

        vectors = embedder.embed([plain or " ", *references])
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        out["similarity"] = float(max(vectors[1:] @ vectors[0]))
    return out


def squad_scores(prediction: str, references: list[str]) -> dict:
    """SQuAD v1.1 ``exact_match`` and token ``f1`` in [0, 1] (torchmetrics' ``squad``), the best over
    the references."""
    from torchmetrics.functional.text import squad

    got = squad({"prediction_text": prediction, "id": "q"},
                {"answers": {"text": list(references), "answer_start": [0] * len(references)}, "id": "q"})
    return {"exact_match": float(got["exact_match"]) / 100, "f1": float(got["f1"]) / 100}


def statements(answer: str) -> list[tuple[str, list[int]]]:
    """The answer's sentences, each with the source numbers it cites.

    >>> statements("Victor is from Geneva [1]. He studied at Ingolstadt [2, 3].")
    [('Victor is from Geneva.', [1]), ('He studied at Ingolstadt.', [2, 3])]
    """
    out = []
    for sentence in _SENTENCE.split(answer.strip()):
        cited = [int(n) for m in _CITATION.finditer(sentence) for n in re.split(r"[,;]", m.group(1))]
        plain = re.sub(r"\s+([.!?,;:])", r"\1", strip_citations(sentence))
        if re.search(r"\w", plain):
            out.append((plain, cited))
    return out


def parse_verdict(reply: str) -> bool | None:
    """True for yes/supported, False for no/not supported, None when the reply says neither (or both).

    >>> [parse_verdict(r) for r in ["Yes.", "no", "The statement is not supported.", "Maybe", ""]]
    [True, False, False, None, None]
    """
    reply = (reply or "").strip()
    match = _VERDICT.match(reply)
    if match:
        return match.group(1).lower() == "yes"
    first = re.split(r"(?<=[.!?])\s", reply, maxsplit=1)[0]
    found = {m.group(1).lower() for m in _WORDED.finditer(first)}
    if not found or len(found - {"unsupported", "not supported"}) and len(found) > 1:
        return None
    return found == {"supported"}


class FaithfulnessJudge:
    """Asks a model, statement by statement, whether the cited sources support it."""

    def __init__(self, model, max_new_tokens: int = 8):
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.name = f"{model.backend}/{model.info.name}"

    def prompt(self, statement: str, sources: list[tuple[int, str]]):
        listed = "\n\n".join(f"[{n}] {' '.join(text.split())}" for n, text in sources)
        body = (f"Sources:\n\n{listed}\n\nStatement: {statement}\n\n"
                "Is the statement supported by the sources? Answer yes or no.")
        if self.model.chats:
            from ..chat import Message

            return [Message("system", JUDGE_SYSTEM), Message("user", body)]
        return body + "\nAnswer:"

    def judge(self, answer: str, context: list[str]) -> list[dict]:
        """One verdict per statement: ``{"statement", "sources", "reply", "supported"}`` where
        ``supported`` is True, False or None (an unparseable reply: an error)."""
        from ..config import GenerationConfig

        config = GenerationConfig(temperature=0, max_new_tokens=self.max_new_tokens, stop=["\n"])
        out = []
        for statement, cited in statements(answer):
            numbers = [n for n in cited if 1 <= n <= len(context)] or list(range(1, len(context) + 1))
            sources = [(n, context[n - 1]) for n in numbers]
            prompt = self.prompt(statement, sources)
            window = self.model.info.context_length or 1 << 30
            if self.model.count_tokens(prompt) + self.max_new_tokens > window:
                out.append({"statement": statement, "sources": numbers, "reply": None, "supported": None,
                            "error": "the sources do not fit in the judge's context window"})
                continue
            reply = self.model.generate(prompt, config).text
            out.append({"statement": statement, "sources": numbers, "reply": reply,
                        "supported": parse_verdict(reply)})
        return out


def faithfulness(verdicts: list[dict]) -> dict:
    """Counts and the supported share of one answer's verdicts (None when nothing was judged)."""
    yes = sum(v["supported"] is True for v in verdicts)
    no = sum(v["supported"] is False for v in verdicts)
    errors = sum(v["supported"] is None for v in verdicts)
    return {"statements": len(verdicts), "supported": yes, "unsupported": no, "errors": errors,
            "faithfulness": yes / (yes + no) if yes + no else None}
