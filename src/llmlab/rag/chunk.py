"""Sentence-aware chunking, counted in the embedding model's own tokens.

A text is tokenized once (``EmbeddingModel.token_spans``: each token's character offsets), cut into
sentences, and sentences are packed into chunks of at most ``size`` tokens; each chunk after the
first starts with the last sentences of the one before, up to ``overlap`` tokens. A sentence longer
than ``size`` is cut at token boundaries. A chunk's ``start``/``end`` are character offsets, and its
text is exactly ``text[start:end]``, so a citation can point back into the source.

    >>> [c.text for c in chunk_text("One. Two. Three.", embedder, size=3, overlap=1)]  # doctest: +SKIP
    ['One. Two.', 'Two. Three.']

What it gives up: sentences are found by a regular expression (., ! or ? before white space, or a
blank line), not a trained splitter, so "Mr. Harker" is a place a chunk may end; nothing is lost,
a chunk just ends a little early. The overlap is whole sentences, so a chunk that ends with a
sentence longer than ``overlap`` tokens shares nothing with the next (no chunk starts mid-sentence
unless its sentence alone is longer than ``size``). ``size`` is capped at the model's window less
its special tokens, so no chunk is ever cut by the embedder.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from ..errors import ConfigError

DEFAULT_SIZE = 200
DEFAULT_OVERLAP = 30
# the end of a sentence: terminal punctuation (and closing quotes or brackets) before white space,
# or a paragraph break
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+|\n[ \t]*\n\s*")


@dataclass
class Chunk:
    text: str
    start: int   # character offsets into the page's text: text == page_text[start:end]
    end: int
    tokens: int  # the embedder's tokens, special tokens not counted


def max_chunk_tokens(embedder) -> int | None:
    window = embedder.info.max_seq_length
    return window - embedder.special_tokens if window else None


def check_sizes(cap: int | None, size: int, overlap: int) -> tuple[int, int]:
    """``size`` capped at ``cap`` (what the embedder reads, ``max_chunk_tokens``); ``overlap`` below
    half of it."""
    if size < 8:
        raise ConfigError(f"chunk size must be at least 8 tokens, got {size}")
    if cap is not None and size > cap:
        size = cap  # the embedder would cut the rest off without a word
    if not 0 <= overlap < size // 2:
        raise ConfigError(f"chunk overlap must be between 0 and half the chunk size ({size // 2}), "
                          f"got {overlap}")
    return size, overlap


def _sentences(text: str, starts: list[int], ends: list[int], size: int) -> list[tuple[int, int]]:
    """Sentences as token index ranges ``[first, last)``, the long ones cut into ``size`` pieces."""
    cuts = [0] + [m.end() for m in _BOUNDARY.finditer(text)] + [len(text)]
    out = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        first, last = bisect.bisect_left(starts, lo), bisect.bisect_left(starts, hi)
        for a in range(first, last, size):
            out.append((a, min(a + size, last)))
    return [s for s in out if s[1] > s[0]]


def chunk_text(text: str, embedder, *, size: int = DEFAULT_SIZE,
               overlap: int = DEFAULT_OVERLAP) -> list[Chunk]:
    size, overlap = check_sizes(max_chunk_tokens(embedder), size, overlap)
    spans = embedder.token_spans(text)
    if not spans:
        return []
    starts, ends = [s for s, _ in spans], [e for _, e in spans]
    sentences = _sentences(text, starts, ends, size)
    chunks: list[Chunk] = []
    i = 0
    while i < len(sentences):
        j, tokens = i, 0
        while j < len(sentences) and tokens + (sentences[j][1] - sentences[j][0]) <= size:
            tokens += sentences[j][1] - sentences[j][0]
            j += 1
        first_tok, last_tok = sentences[i][0], sentences[j - 1][1]
        start, end = starts[first_tok], ends[last_tok - 1]
        chunks.append(Chunk(text[start:end], start, end, last_tok - first_tok))
        if j >= len(sentences):
            break
        # step back over whole sentences that fit in the overlap, always moving forward by one
        back, k = 0, j
        while k - 1 > i and back + (sentences[k - 1][1] - sentences[k - 1][0]) <= overlap:
            k -= 1
            back += sentences[k][1] - sentences[k][0]
        i = k
    return chunks
