"""Stop strings while streaming: text that may be the start of one is held back until the next piece
decides, so no backend ever shows part of a stop string. Used by the llamacpp and hf backends and
the serving engine alike."""

from __future__ import annotations


class StopFilter:
    """Streams generated text without ever showing a stop string: text that might be the start of
    one is held back until the next piece decides; at a complete one the text is cut there.

    >>> f = StopFilter(["\\n\\n"])
    >>> f.feed("Hello\\n"), f.feed("\\nWorld"), f.stopped
    ('Hello', '', True)
    """

    def __init__(self, stops=()):
        self.stops = tuple(stops or ())
        self.held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add generated text; returns what is safe to show now (all of it, at a stop string)."""
        self.held += piece
        if self.stops:
            cut = find_stop(self.held, self.stops)
            if cut is not None:
                self.held, self.stopped = self.held[:cut], True
                safe = len(self.held)
            else:
                safe = len(self.held) - partial_stop(self.held, self.stops)
        else:
            safe = len(self.held)
        out, self.held = self.held[:safe], self.held[safe:]
        return out

    def rest(self, tail: str = "") -> str:
        """The held-back text at the end, with the decoder's last ``tail`` unless a stop string came."""
        out = self.held + ("" if self.stopped else tail)
        self.held = ""
        return out


def find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [text.find(s) for s in stops if s in text]
    return min(hits) if hits else None


def partial_stop(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best
