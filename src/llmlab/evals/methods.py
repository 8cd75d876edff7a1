"""How a model's answer becomes a label: generate and parse, score the labels, or calibrate.

- ``generate``: the model writes (greedy, at most the strategy's ``max_new_tokens`` -- 10 for the
  lesson's prompts) and the label is parsed out of the text; an output naming no label, or two, is
  unparseable and stays so.
- ``score``: the log-likelihood of each label as the continuation of the prompt, highest wins (how
  lm-evaluation-harness scores multiple choice). Nothing can be unparseable. On llama.cpp the
  prompt prefix all items share is evaluated once (see ``LlamaCppModel.score``).
- ``calibrate``: ``score`` after contextual calibration (Zhao et al. 2021, "Calibrate before use"):
  the label probabilities the prompt gives to content-free inputs ("N/A", "", "[MASK]") are the
  model's prior, and each item's probabilities are divided by it.
- ``batch-calibrate``: ``score`` after batch calibration (Zhou et al. 2024, "Batch Calibration"):
  the prior is the mean label probability over the evaluated items themselves (their texts only,
  never their labels), so predictions are final once every item is scored.

What it gives up: a label's log-likelihood is a sum over its tokens, so a label of several tokens
starts at a disadvantage that only ``calibrate`` corrects.
"""

from __future__ import annotations

import math
import time

from ..config import GenerationConfig
from ..errors import ConfigError, NotSupportedError
from ..tasks import continuations, parse_label, prompt_for
from ..tasks.spec import Strategy, TaskSpec

METHODS = ("score", "generate", "calibrate", "batch-calibrate")
CONTENT_FREE = ("N/A", "", "[MASK]")


def make_method(name: str, generation: dict | None = None) -> Method:
    classes = {"score": ScoreMethod, "generate": GenerateMethod, "calibrate": CalibrateMethod,
               "batch-calibrate": BatchCalibrateMethod}
    if name not in classes:
        raise ConfigError(f"unknown method {name!r}; use one of: {', '.join(METHODS)}")
    return classes[name](generation or {})


class Method:
    """Set up once per (model, task, strategy) with ``setup``, then ``predict`` one text at a time."""

    name = "?"
    needs: str | None = None  # the model capability it needs (``Model.can``), checked before a run

    def __init__(self, generation: dict):
        self.generation = generation  # settings the user chose; the rest come from the strategy

    def setup(self, model, task: TaskSpec, strategy: Strategy) -> dict:
        self.model, self.task, self.strategy = model, task, strategy
        return {}

    def settings(self, strategy: Strategy) -> dict:
        """What, besides model, task and data, determines the predictions (part of a run's identity)."""
        return {}

    def budget(self, model, task: TaskSpec, strategy: Strategy) -> int:
        """Tokens needed after the prompt (checked against the context window before running)."""
        return max((len(model.tokenize(c)) for c in continuations(model, task, strategy)), default=1)

    def predict(self, text: str) -> dict:
        raise NotImplementedError


class GenerateMethod(Method):
    name = "generate"

    def config(self, strategy: Strategy) -> GenerationConfig:
        base = GenerationConfig(temperature=0.0, max_new_tokens=strategy.max_new_tokens)
        return base.replace(**self.generation)

    def settings(self, strategy: Strategy) -> dict:
        return {"generation": self.config(strategy).to_dict()}

    def budget(self, model, task, strategy) -> int:
        return self.config(strategy).max_new_tokens

    def setup(self, model, task, strategy) -> dict:
        self.cfg = self.config(strategy)
        return super().setup(model, task, strategy)

    def predict(self, text: str) -> dict:
        start = time.perf_counter()
        response = self.model.generate(prompt_for(self.model, self.task, self.strategy, text), self.cfg)
        out = response.text
        return {"pred": parse_label(out, self.task, self.strategy.extract), "raw": out, "scores": None,
                "seconds": time.perf_counter() - start, "input_tokens": response.usage.prompt_tokens,
                "output_tokens": response.usage.completion_tokens}


class ScoreMethod(Method):
    name = "score"
    needs = "score"

    def setup(self, model, task, strategy) -> dict:
        super().setup(model, task, strategy)
        self.conts = continuations(model, task, strategy)
        try:
            self.cont_tokens = sum(len(model.tokenize(c)) for c in self.conts)
        except NotSupportedError:  # a server that does not tokenize: tokens go uncounted
            self.cont_tokens = None
        return {}

    def tokens(self, text: str) -> dict:
        """The tokens scoring ``text`` reads, as a server would be sent them: the prompt once per label,
        and each label's own tokens; nothing is generated."""
        if self.cont_tokens is None:
            return {"input_tokens": None, "output_tokens": 0}
        prompt = self.model.count_tokens(prompt_for(self.model, self.task, self.strategy, text))
        return {"input_tokens": prompt * len(self.conts) + self.cont_tokens, "output_tokens": 0}

    def logprobs(self, text: str) -> dict[str, float]:
        values = self.model.score(prompt_for(self.model, self.task, self.strategy, text), self.conts)
        return dict(zip(self.task.labels, values, strict=True))

    def predict(self, text: str) -> dict:
        start = time.perf_counter()
        scores = self.logprobs(text)
        return {"pred": _best(scores), "raw": _show(scores), "scores": scores,
                "seconds": time.perf_counter() - start, **self.tokens(text)}


class CalibrateMethod(ScoreMethod):
    name = "calibrate"

    def settings(self, strategy: Strategy) -> dict:
        return {"content_free": list(CONTENT_FREE)}

    def setup(self, model, task, strategy) -> dict:
        super().setup(model, task, strategy)
        probs = [_softmax(self.logprobs(cf)) for cf in CONTENT_FREE]
        self.prior = {k: sum(p[k] for p in probs) / len(probs) for k in task.labels}
        return {"prior": self.prior}

    def predict(self, text: str) -> dict:
        start = time.perf_counter()
        raw = self.logprobs(text)
        p = _softmax(raw)
        scores = {k: math.log(max(p[k], 1e-300)) - math.log(self.prior[k]) for k in p}
        return {"pred": _best(scores), "raw": f"calibrated {_show(scores)} | raw {_show(raw)}",
                "scores": scores, "seconds": time.perf_counter() - start, **self.tokens(text)}


class BatchCalibrateMethod(ScoreMethod):
    """Items are scored (and stored) as by ``score``; ``finalize`` calibrates them all at the end."""

    name = "batch-calibrate"

    def finalize(self, items: list[dict]) -> dict:
        probs = [_softmax(item["scores"]) for item in items]
        labels = list(probs[0]) if probs else []
        prior = {k: sum(p[k] for p in probs) / len(probs) for k in labels}
        for item, p in zip(items, probs, strict=True):
            raw = item["scores"]
            scores = {k: math.log(max(p[k], 1e-300)) - math.log(prior[k]) for k in p}
            item.update(pred=_best(scores), scores=scores,
                        raw=f"calibrated {_show(scores)} | raw {_show(raw)}")
        return {"prior": prior}


def _best(scores: dict[str, float]) -> str:
    return max(scores, key=scores.get)  # ties go to the first label in the task's order


def _show(scores: dict[str, float]) -> str:
    return " ".join(f"{k}:{v:.3f}" for k, v in scores.items())


def _softmax(logps: dict[str, float]) -> dict[str, float]:
    top = max(logps.values())
    exps = {k: math.exp(v - top) for k, v in logps.items()}
    total = sum(exps.values())
    return {k: v / total for k, v in exps.items()}
