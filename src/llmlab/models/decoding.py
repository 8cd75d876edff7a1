"""The one decode loop: from sampled token ids to the stream's chunks, for every local backend.

The llama.cpp model, the hf model and the serving engine each pick tokens their own way (a
llama.cpp sampler, transformers' logits processors, one batch for many sequences), then hand each
token to a ``Decoding``, which owns everything after the pick and so means the same everywhere:

- an end-of-generation token ends with ``stop``; a stop string ends with ``stop`` and is cut off,
  with any text that might be its start held back until the next token decides (``StopFilter``);
- ``max_new_tokens`` ends with ``length``, the context window with ``context``, a cancel with
  ``interrupted``;
- control tokens never reach the text: the template's markup, and the placeholders of modalities
  a text model is not given (Gemma 3's ``<start_of_image>``) count as generated but show nothing;
- each token's log-probability, when asked for, rides on the chunk that carries its text; the
  end-of-generation token's and a stop string's tokens are reported too (they were generated),
  though their text is not shown.

It is push-shaped (``feed`` one token, get a chunk or nothing) so the engine, which advances many
sequences per step, uses the same object as a backend's simple ``for`` loop.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

from ..config import GenerationConfig
from .events import Chunk, TokenLogprob, Usage
from .stops import StopFilter

# Placeholders of image/audio input in a text model's vocabulary. llama.cpp marks them
# user-defined, like Gemma's HTML-tag tokens (``<table>``), which are real text; these are not.
MODALITY_MARKERS = re.compile(r"<(start|end)_of_(image|audio|video)>|<(image|audio|video)_soft_token>"
                              r"|\[multimodal\]")


class ByteText:
    """Text of token ids from their bytes, decoded incrementally as UTF-8 (a character may span
    tokens), as llama.cpp gives them."""

    def __init__(self, token_bytes: Callable[[int], bytes]):
        self.token_bytes = token_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token_id: int) -> str:
        return self.decoder.decode(self.token_bytes(token_id))

    def flush(self) -> str:
        return self.decoder.decode(b"", final=True)


class Decoding:
    """One generation's bookkeeping after each token is picked.

    ``text`` turns ids into text (``add``/``flush``); ``is_end`` says end-of-generation;
    ``is_hidden`` says a control token; ``room`` is how many tokens the window still takes.
    """

    def __init__(self, config: GenerationConfig, prompt_tokens: int, text, *,
                 is_end: Callable[[int], bool], is_hidden: Callable[[int], bool], room: int | None = None):
        self.config = config
        self.prompt_tokens = prompt_tokens
        self.text = text
        self.is_end = is_end
        self.is_hidden = is_hidden
        self.room = room
        self.stop = StopFilter(config.stop)
        self.n = 0
        self.finish_reason: str | None = None
        self.pending: list[TokenLogprob] = []
        self._last = ""

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def feed(self, token_id: int, logprob: TokenLogprob | None = None) -> Chunk | None:
        """Take one picked token; returns a chunk to pass on, or None (nothing to show yet, or done:
        then ``finish_reason`` is set and ``end()`` gives the last chunk)."""
        if logprob is not None:
            self.pending.append(logprob)
        if self.is_end(token_id):
            self.finish_reason = "stop"
            return None
        self.n += 1
        piece = "" if self.is_hidden(token_id) else self.stop.feed(self.text.add(token_id))
        if self.stop.stopped:
            self.finish_reason = "stop"
            self._last = piece
            return None
        chunk = None
        if piece or self.pending:
            chunk = Chunk(piece, usage=Usage(0, self.n), logprobs=self.pending)
            self.pending = []
        if self.n >= self.config.max_new_tokens:
            self.finish_reason = "length"
        elif self.room is not None and self.n >= self.room:
            self.finish_reason = "context"
        return chunk

    def end(self, reason: str | None = None) -> Chunk:
        """The last chunk: held-back text, the finish reason (``reason`` if the loop ended it, as a
        cancel does) and the usage."""
        if reason is not None and self.finish_reason is None:
            self.finish_reason = reason
        tail = "" if self.stop.stopped else self.text.flush()
        held = self._last + self.stop.rest(tail)
        chunk = Chunk(held, finish_reason=self.finish_reason or "length",
                      usage=Usage(self.prompt_tokens, self.n), logprobs=self.pending)
        self.pending = []
        return chunk


def log_softmax(logits):
    """Natural-log probabilities of a row of logits, in float64 (numpy)."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    top = x.max()
    return x - top - np.log(np.exp(x - top).sum())


def top_logprobs(row, n: int, piece: Callable[[int], str]) -> list[tuple[str, float]]:
    """The ``n`` best (text, logprob) of a log-softmax row, best first."""
    import numpy as np

    if not n:
        return []
    best = np.argpartition(-row, n)[:n]
    return [(piece(int(t)), float(row[t])) for t in best[np.argsort(-row[best])]]


def token_logprob(row, token_id: int, n_top: int, piece: Callable[[int], str]) -> TokenLogprob:
    """``token_id``'s log-probability in a log-softmax ``row``, with the ``n_top`` best beside it."""
    return TokenLogprob(piece(token_id), float(row[token_id]), top_logprobs(row, n_top, piece), token_id)
