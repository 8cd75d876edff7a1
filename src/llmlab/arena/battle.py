"""One arena battle: two models answer the same prompt with the same settings and seed, on sides
drawn at random, and a vote says which answer was better.

    >>> battle = start(models, "Explain gravity to a child.", GenerationConfig(max_new_tokens=80))
    >>> battle.answer_a, battle.answer_b           # shown without names in anonymous mode
    >>> battle.vote("model_a", store)              # names are revealed after this; the vote is stored

``start`` is the two steps the web UI takes one at a time so it can stream: ``draw`` puts two model
names on sides (before any model is loaded), then ``battle.answer(side, model)`` streams one side's
answer; the battle is ``done`` once both sides have answered whole.

The same seed for both sides means two sampled answers differ only by the model. Sides are drawn at
random for every battle, so a voter who prefers the left column cannot favour one model. A vote is
accepted only once both answers have finished, once per battle, and only anonymous votes count
towards the leaderboard (``rating.leaderboard``).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..config import GenerationConfig
from ..errors import ConfigError
from .rating import WINNERS

VOTES = {"a": "model_a", "b": "model_b", "tie": "tie", "bad": "tie (bothbad)",
         **{w: w for w in WINNERS}}


@dataclass
class Battle:
    prompt: str
    model_a: str
    model_b: str
    settings: dict
    anonymous: bool = True
    answer_a: str = ""
    answer_b: str = ""
    call_a: int | None = None
    call_b: int | None = None
    done: bool = False
    winner: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    config: GenerationConfig | None = field(default=None, repr=False)  # what ``settings`` was made from
    _answered: set = field(default_factory=set, repr=False)

    def answer(self, side: str, model) -> Iterator[str]:
        """Stream ``model``'s answer for ``side`` ("a" or "b"), yielding the text so far; the battle is
        ``done`` when both sides have answered to the end (an answer cut off leaves it not done)."""
        if side not in ("a", "b"):
            raise ConfigError(f"a side is a or b, got {side!r}")
        message = [("user", self.prompt)] if model.chats else self.prompt
        response = model.prompt(message, self.config or GenerationConfig())
        text = ""
        for piece in response:
            text += piece
            setattr(self, f"answer_{side}", text)
            yield text
        setattr(self, f"answer_{side}", response.text)
        setattr(self, f"call_{side}", response.log_id)
        self._answered.add(side)
        self.done = self._answered == {"a", "b"}

    def vote(self, winner: str, store=None) -> dict:
        """Record the vote (``a``, ``b``, ``tie``, ``bad`` or FastChat's names) and return it; the
        answers must be complete, and a battle takes one vote."""
        if not self.done:
            raise ConfigError("vote after both answers have finished")
        if self.winner is not None:
            raise ConfigError("this battle has been voted on already")
        if winner not in VOTES:
            raise ConfigError(f"a vote is one of a, b, tie, bad; got {winner!r}")
        self.winner = VOTES[winner]
        record = {"battle": self.id, "model_a": self.model_a, "model_b": self.model_b, "winner": self.winner,
                  "anonymous": self.anonymous, "prompt": self.prompt, "answer_a": self.answer_a,
                  "answer_b": self.answer_b, "settings": self.settings, "call_a": self.call_a,
                  "call_b": self.call_b}
        if store is not None:
            store.add_vote(record)
        return record


def draw(names, prompt: str, config: GenerationConfig | None = None, *, anonymous: bool = True,
         rng: random.Random | None = None) -> Battle:
    """Two of ``names`` on random sides, with ``config``'s seed, or one drawn for both if it has none."""
    names = sorted(set(names))
    if len(names) < 2:
        raise ConfigError("an arena needs at least two different models")
    rng = rng or random.Random()
    a, b = rng.sample(names, 2)
    config = config or GenerationConfig()
    if config.seed is None:
        config = config.replace(seed=rng.randrange(2**31))
    return Battle(prompt, a, b, config.to_dict(), anonymous, config=config)


def start(models: dict, prompt: str, config: GenerationConfig | None = None, *, anonymous: bool = True,
          rng: random.Random | None = None) -> Battle:
    """Draw two of ``models`` (name -> loaded model) onto random sides and have both answer ``prompt``
    with ``config``; an unseeded config gets one seed, the same for both."""
    battle = draw(models, prompt, config, anonymous=anonymous, rng=rng)
    for side in ("a", "b"):
        for _ in battle.answer(side, models[getattr(battle, f"model_{side}")]):
            pass
    return battle
