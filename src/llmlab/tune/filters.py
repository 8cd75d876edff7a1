"""The checks a synthetic text passes before it is kept (``synthetic.py`` uses them).

``clean`` strips what a model wraps around its text (a lead-in such as "Here's a positive review:",
quotes, commentary after a blank line, a sentence cut off by the token limit); ``check_text`` rejects
what is not an example text at all (empty, a refusal, talk to the user, too short or long, a copy of
the prompt by shared word trigrams); ``Deduper`` drops exact duplicates (normalised text) and near
ones (MiniLM embeddings, cosine at or above a threshold, against the rows kept so far).

What it gives up: these are surface checks; none can tell a fluent text of the wrong label from a
right one (``synthetic.py``'s optional label check is for that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

_REFUSAL = re.compile(r"^(i'?m sorry|i am sorry|sorry,|i can'?not|i can't|i'm unable|i am unable|"
                      r"as an ai)|as an ai (language )?model", re.I)
# a reply to the person asking rather than an example text
_ASSISTANT = re.compile(r"^(please|could you|can you|would you|certainly|of course)\b|\blet me know\b|"
                        r"\bi'?d be (happy|glad) to\b|\bhere'?s (a|an|the|my)\b|^task:", re.I)
# a short first clause ending in a colon that talks about the answer rather than being it
_LEAD_IN = re.compile(r"^[^.?\n:]{0,100}\b(here|example|text|review|sentence|version|sure|output|"
                      r"answer|label|sentiment|response)\b[^.!?\n:]{0,60}:\s*", re.I)
_QUOTES = "\"'“”‘’«»`"


@dataclass(frozen=True)
class Filters:
    """What a generated text must satisfy to be kept."""

    min_chars: int = 20
    max_chars: int = 1000
    max_overlap: float = 0.3     # share of the text's word trigrams also in the prompt
    near_duplicate: float = 0.92  # cosine (MiniLM) at or above which a text copies a kept one


def clean(raw: str, cut_off: bool = False) -> str:
    """The text a model meant, without what it wrapped it in; ``cut_off``: it hit max_new_tokens.

    >>> clean('Here is a positive review: "Warm, funny and wise."\\n\\nThis review is positive.')
    'Warm, funny and wise.'
    """
    text = raw.strip()
    lines = text.split("\n")
    while len(lines) > 1 and lines[0].rstrip().endswith(":"):  # "Here's an example:" on its own line
        lines = lines[1:]
    text = "\n".join(lines).strip()
    lead = _LEAD_IN.match(text)
    if lead and text[lead.end():].strip():
        text = text[lead.end():]
    text = re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0].strip()  # commentary after a blank line
    if text[:1] in _QUOTES:
        end = text.find(_closing(text[0]), 1)
        text = text[1:end] if end > 0 else text[1:]
    if cut_off and not re.search(r"[.!?…]\W*$", text):  # keep whole sentences of a cut-off answer
        ends = [m.end() for m in re.finditer(r"[.!?…][\"')\]”’]*(?=\s)", text)]
        text = text[:ends[-1]] if ends else ""  # not one whole sentence: nothing usable ("cut off")
    return " ".join(text.strip(_QUOTES + " ").split())


def _closing(quote: str) -> str:
    return {"“": "”", "‘": "’", "«": "»"}.get(quote, quote)


def normalise(text: str) -> str:
    """How texts are compared for exact duplicates: case, punctuation and spacing do not count."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def overlap(text: str, prompt: str) -> float:
    """The share of the text's word trigrams (words, for a text under three) that the prompt has too."""
    def grams(s: str) -> set:
        words = normalise(s).split()
        n = 3 if len(words) >= 3 else 1
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    mine = grams(text)
    return len(mine & grams(prompt)) / len(mine) if mine else 0.0


def check_text(text: str, prompt: str, filters: Filters = Filters()) -> str | None:
    """Why a cleaned text is not a usable example, or None when it is."""
    if not text.strip():
        return "empty"
    if _REFUSAL.search(text):
        return "refusal"
    if len(text) < filters.min_chars:
        return "too short"
    if len(text) > filters.max_chars:
        return "too long"
    if overlap(text, prompt) >= filters.max_overlap:
        return "copies the prompt"
    if _ASSISTANT.search(text):
        return "talks to the user"
    return None


# --- de-duplication ------------------------------------------------------------------------------


class Deduper:
    """Exact (normalised text) and near (embedding cosine) duplicates of the texts added so far."""

    def __init__(self, embedder="minilm", threshold: float = 0.92):
        if not 0 < threshold <= 1:
            raise ConfigError(f"the near-duplicate threshold is a cosine in (0, 1], got {threshold!r}")
        if isinstance(embedder, str):
            from ..models.embedders import load_embedder

            embedder = load_embedder(embedder)
        self.embedder, self.threshold = embedder, threshold
        self.seen: dict[str, int] = {}  # normalised text -> its index
        self.vectors = None             # numpy array, one row per added text

    def check(self, text: str):
        """(None, vector) for a new text, or ('exact duplicate' | 'near duplicate', index of the one)."""
        from sklearn.metrics.pairwise import cosine_similarity

        key = normalise(text)
        if key in self.seen:
            return "exact duplicate", self.seen[key]
        vector = self.embedder.embed([text])
        if self.vectors is not None and len(self.vectors):
            sims = cosine_similarity(vector, self.vectors)[0]
            best = int(sims.argmax())
            if sims[best] >= self.threshold:
                return "near duplicate", best
        return None, vector

    def add(self, texts: list[str], vectors=None) -> None:
        import numpy as np

        if not texts:
            return
        vectors = self.embedder.embed(texts) if vectors is None else vectors
        start = 0 if self.vectors is None else len(self.vectors)
        for i, text in enumerate(texts):
            self.seen.setdefault(normalise(text), start + i)
        self.vectors = vectors if self.vectors is None else np.vstack([self.vectors, vectors])


def deduplicate(texts: list[str], embedder="minilm", threshold: float = 0.92) -> list[tuple[str, int] | None]:
    """For each text in order: None when kept, else (reason, index of the earlier text it copies).

    >>> deduplicate(["A fine film.", "a fine film!", "Dull."])     # doctest: +SKIP
    [None, ('exact duplicate', 0), None]
    """
    dedup, kept, out = Deduper(embedder, threshold), [], []
    for i, text in enumerate(texts):
        reason, info = dedup.check(text)
        if reason is None:
            dedup.add([text], info)
            kept.append(i)
            out.append(None)
        else:
            out.append((reason, kept[info]))
    return out


# --- prompts -------------------------------------------------------------------------------------
