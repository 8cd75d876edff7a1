"""Reranking: a second, slower look at the best retrieved chunks by a model reading query and chunk together.

    ce/DIR          a sentence-transformers cross-encoder directory (``CrossEncoder.predict``)
    MODEL           any llmlab model that can score (``smollm2``, ``gemma3-270m``, ``hf/...``): a pointwise
                    yes/no judge, the chunk's score being log P(yes) - log P(no) after the question
                    "Does the passage answer the question?"

    >>> hits = retrieve("Who is Renfield?", "novels", retriever="hybrid+rerank", k=5,
    ...                 rerank="smollm2")                                  # doctest: +SKIP

The log-probability reranker puts the question before the passage, so the model's KV cache keeps
the instruction and question across the candidates of one query and evaluates only each passage.
Candidates are the hybrid retriever's top ``depth`` (default 20); the reranked top ``k`` are
returned with the reranker's score.

What it gives up: a pointwise judge scores each passage alone (no comparison between them); the
yes/no reranker is only as good as the model's reading, and a 135M model's is weak (bench/RESULTS.md
has the measurement); its cost is one prompt evaluation per candidate (about 250 tokens each).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

from ..errors import ConfigError, MissingDependencyError

DEFAULT_DEPTH = 20
_SYSTEM = "You decide whether a passage answers a question. Reply with yes or no."
_LOADED: dict[str, Reranker] = {}


class Reranker(ABC):
    name: str

    @abstractmethod
    def scores(self, query: str, texts: list[str]) -> list[float]:
        """One relevance score per text, higher is more relevant."""


class CrossEncoderReranker(Reranker):
    def __init__(self, path: str):
        if not Path(path).is_dir():
            raise ConfigError(f"cross-encoder directory not found: {path}")
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise MissingDependencyError("sentence-transformers", "rag") from exc
        self.name = f"ce/{Path(path).resolve()}"
        self.model = CrossEncoder(str(path), device="cpu")

    def scores(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        return [float(s) for s in self.model.predict([(query, t) for t in texts], show_progress_bar=False)]


class LogprobReranker(Reranker):
    """log P(yes) - log P(no) as the model's next word, each summed over its spellings ("Yes", "yes")."""

    def __init__(self, model):
        model.require("score", "rerank retrieved chunks")
        self.model = model
        self.name = f"{model.backend}/{model.info.name}"

    def prompt(self, query: str, text: str):
        passage = " ".join(text.split())
        if self.model.chats:
            from ..chat import Message

            return [Message("system", _SYSTEM),
                    Message("user", f"Question: {query.strip()}\n\nPassage: {passage}\n\n"
                                    "Does the passage answer the question? Reply yes or no.")]
        return (f"Question: {query.strip()}\nPassage: {passage}\n"
                "Does the passage answer the question (yes or no)? Answer:")

    def scores(self, query: str, texts: list[str]) -> list[float]:
        out = []
        for text in texts:
            prompt = self.prompt(query, text)
            words = (["Yes", "yes", "No", "no"] if self.model.chats else [" Yes", " yes", " No", " no"])
            lp = self.model.score(prompt, words)
            out.append(_logsumexp(lp[:2]) - _logsumexp(lp[2:]))
        return out


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def load_reranker(spec: str | Reranker) -> Reranker:
    """``ce/DIR`` -> a cross-encoder; any other name -> the yes/no reranker on that llmlab model.
    Loaded once per spec per process."""
    if isinstance(spec, Reranker):
        return spec
    if spec not in _LOADED:
        if spec.startswith("ce/"):
            _LOADED[spec] = CrossEncoderReranker(spec[3:])
        else:
            from ..models.registry import load_model

            _LOADED[spec] = LogprobReranker(load_model(spec))
    return _LOADED[spec]


def rerank(query: str, hits: list, reranker: Reranker, k: int) -> list:
    """``hits`` (store ``Hit``s) reordered by the reranker, best ``k`` first, scored by it. Ties keep
    the retriever's order."""
    scores = reranker.scores(query, [h.text for h in hits])
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))[:k]
    out = []
    for i in order:
        hit = hits[i]
        hit.score = scores[i]
        out.append(hit)
    return out
