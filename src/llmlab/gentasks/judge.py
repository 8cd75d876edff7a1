"""An LLM as judge of generated text: a rubric score per output, its agreement with people, and
pairwise comparisons judged in both orders.

    rubric     the judge sees the task's criteria, the input, the reference(s) when there are any and the
               output, and replies with a whole number on the rubric's scale (1-5 by default). The first
               number of the reply that is not a denominator ("4/5", "4 out of 5") is the score; a reply
               with none, or with one off the scale, is *unparsed*: counted apart, never made a number.
    agreement  the judge scores a labelled sample (outputs with a ``human_score``); beside its scores the
               report gives exact agreement, Cohen's kappa with quadratic weights (scikit-learn; the
               scale is ordinal) and Spearman's rho (scipy) over the outputs it scored.
    pairwise   two outputs for one input are judged as A/B and again as B/A. A verdict counts only when
               both orders name the same output (or both say tie); a judge that picks the same
               *position* both times shows position bias, reported as a rate.

The judge is any llmlab model (``--judge NAME``) run greedily; chat models get a chat, others a
prompt ending in ``Score:`` or ``Better:``.

What it gives up: one judge call per output (no sampling or averaging of several judges); a small
local judge is a poor one, and the agreement figures are there to show how poor.
"""

from __future__ import annotations

import re

from ..config import GenerationConfig
from .spec import GenTask, Rubric

SETTINGS = GenerationConfig(temperature=0, max_new_tokens=8)
SYSTEM = "You are a strict grader. You reply with the verdict only, never with an explanation."
_WORDS = {w: n for n, w in enumerate("zero one two three four five six seven eight nine ten".split())}
_CHOICE = re.compile(r"^\W*(?:response|output|answer|option)?\s*\(?\b(A|B|tie)\b", re.IGNORECASE)


def parse_score(reply: str, rubric: Rubric) -> int | None:
    """The score a judge's reply gives, or None when it gives none on the scale.

    A score is the number the reply starts with (after "Score:" or "Rating:"), a number said to be
    the score ("my score is 4", "I would give it a 4"), or one out of the scale's top ("4/5", "4 out
    of 5"); a number elsewhere in a sentence ("closes for three weeks") is not a score.

    >>> r = Rubric("clear", 1, 5)
    >>> [parse_score(x, r) for x in ["4", "**Score: 3/5**", "I'd give it four.", "7", "The one-line summary",
    ...                              "Closed for three weeks", "It deserves 5 out of 5", "3.5"]]
    [4, 3, 4, None, None, None, 5, None]
    """
    text = " ".join((reply or "").lower().split())
    number = r"(\d+(?:\.\d+)?|" + "|".join(_WORDS) + r")\b(?!-)"
    patterns = (rf"^\W*(?:(?:score|rating|grade)\s*(?:is|of|:|=)?\s*)?{number}",
                rf"\b(?:score|rating|grade)\s*(?:is|of|:|=)\s*(?:a\s+)?{number}",
                rf"\b(?:give|rate|score)\s+(?:it|this|the output)?\s*(?:an?\s+)?{number}",
                rf"\b{number}\s*(?:/|out of)\s*{rubric.high}\b")
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            word = match.group(1)
            value = _WORDS.get(word, None) if not word[0].isdigit() else float(word)
            if value is None or value != int(value):
                return None
            return int(value) if rubric.low <= value <= rubric.high else None
    return None


def parse_choice(reply: str) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` from a pairwise reply, else None.

    >>> [parse_choice(x) for x in ["A", "Response B is better", "(b)", "Tie.", "both", ""]]
    ['A', 'B', 'B', 'tie', None, None]
    """
    match = _CHOICE.match(reply or "")
    if not match:
        return None
    word = match.group(1)
    return "tie" if word.lower() == "tie" else word.upper()


class RubricJudge:
    """Scores outputs of a task on its rubric with a model (``judge.score(row_values, refs, output)``)."""

    def __init__(self, model, task: GenTask):
        from ..errors import ConfigError

        if task.rubric is None:
            raise ConfigError(f"task {task.name!r} has no `rubric:` for --judge to score by")
        self.model, self.task, self.rubric = model, task, task.rubric
        self.name = f"{model.backend}/{model.info.name}"

    def identity(self) -> dict:
        return {"judge": self.name, "rubric": [self.rubric.criteria, self.rubric.low, self.rubric.high]}

    def text(self, values: dict, references, output: str) -> str:
        r = self.rubric
        lines = [f"You are grading the output of a task: {self.task.description or self.task.name}.",
                 f"Criteria: {r.criteria}", f"Input:\n{_input(self.task, values)}"]
        if references:
            lines.append("Reference output: " + " / ".join(references))
        lines += [f"Output to grade:\n{output.strip() or '(empty)'}",
                  f"Score the output from {r.low} (worst) to {r.high} (best). Reply with the number only."]
        return "\n\n".join(lines)

    def score(self, values: dict, references, output: str) -> dict:
        reply = _ask(self.model, self.text(values, references, output), "Score:")
        return {"reply": reply, "score": parse_score(reply, self.rubric)}


class PairJudge(RubricJudge):
    """Which of two outputs is better on the rubric's criteria, asked in both orders."""

    def text_pair(self, values: dict, references, first: str, second: str) -> str:
        lines = [f"You are comparing two outputs of a task: {self.task.description or self.task.name}.",
                 f"Criteria: {self.rubric.criteria}", f"Input:\n{_input(self.task, values)}"]
        if references:
            lines.append("Reference output: " + " / ".join(references))
        lines += [f"Response A:\n{first.strip() or '(empty)'}", f"Response B:\n{second.strip() or '(empty)'}",
                  "Which response is better? Reply with A, B or tie."]
        return "\n\n".join(lines)

    def compare(self, values: dict, references, a: str, b: str) -> dict:
        """Both orders; ``winner`` is "a", "b", "tie", or None when the orders disagree or a reply is
        unparsed."""
        ab = _ask(self.model, self.text_pair(values, references, a, b), "Better:")
        ba = _ask(self.model, self.text_pair(values, references, b, a), "Better:")
        return {"reply_ab": ab, "reply_ba": ba, **combine(parse_choice(ab), parse_choice(ba))}


def combine(ab: str | None, ba: str | None) -> dict:
    """Two positional choices (A/B/tie asked as a-then-b, then b-then-a) as a verdict on a and b.

    >>> combine("A", "B")["winner"], combine("A", "A")["winner"], combine("A", "A")["position_bias"]
    ('a', None, True)
    """
    first = {"A": "a", "B": "b", "tie": "tie"}.get(ab) if ab else None
    second = {"A": "b", "B": "a", "tie": "tie"}.get(ba) if ba else None
    parsed = first is not None and second is not None
    return {"choice_ab": ab, "choice_ba": ba, "parsed": parsed,
            "winner": first if parsed and first == second else None,
            "position_bias": parsed and ab == ba and ab != "tie"}


def pairwise_summary(verdicts: list[dict]) -> dict:
    """Wins, ties, inconsistent and unparsed pairs, and the position-bias rate over parsed pairs."""
    parsed = [v for v in verdicts if v["parsed"]]
    count = {w: sum(v["winner"] == w for v in parsed) for w in ("a", "b", "tie")}
    biased = sum(v["position_bias"] for v in parsed)
    first = sum((v["choice_ab"] == "A") + (v["choice_ba"] == "A") for v in parsed)
    decided = count["a"] + count["b"]
    return {"n": len(verdicts), "a_wins": count["a"], "b_wins": count["b"], "ties": count["tie"],
            "inconsistent": len(parsed) - sum(count.values()), "unparsed": len(verdicts) - len(parsed),
            "position_bias_rate": biased / len(parsed) if parsed else None,
            "first_position_rate": first / (2 * len(parsed)) if parsed else None,
            "a_win_rate": count["a"] / decided if decided else None}


def agreement(judge_scores: list[int | None], human: list[int], rubric: Rubric) -> dict:
    """How a judge's scores agree with people's on the same outputs (unparsed ones left out, counted)."""
    pairs = [(j, h) for j, h in zip(judge_scores, human, strict=True) if j is not None]
    out = {"n": len(human), "scored": len(pairs), "unparsed": len(human) - len(pairs),
           "exact": None, "kappa": None, "spearman": None}
    if not pairs:
        return out
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    j, h = (np.array(x) for x in zip(*pairs, strict=True))
    out["exact"] = float((j == h).mean())
    if len(set(j)) > 1 or len(set(h)) > 1:
        kappa = cohen_kappa_score(h, j, labels=rubric.scale, weights="quadratic")
        out["kappa"] = None if np.isnan(kappa) else float(kappa)
    if len(pairs) > 2 and len(set(j)) > 1 and len(set(h)) > 1:
        out["spearman"] = float(spearmanr(h, j).statistic)
    return out


def human_scores(rows, rubric: Rubric, source) -> list[int]:
    from ..errors import DataError

    out = []
    for row in rows:
        value = str(row.values.get("human_score", "")).strip()
        try:
            number = float(value)
        except ValueError:
            number = None
        score = int(number) if number is not None and number.is_integer() else None
        if score is None or not rubric.low <= score <= rubric.high:
            raise DataError(f"{source}: row {row.id} has human_score {value!r}, not a whole number from "
                            f"{rubric.low} to {rubric.high}")
        out.append(score)
    return out


def _input(task: GenTask, values: dict) -> str:
    from ..specfile import render

    return render(task.prompt, values).strip()


def _ask(model, text: str, cue: str) -> str:
    if model.chats:
        from ..chat import Message

        return model.generate([Message("system", SYSTEM), Message("user", text)], SETTINGS).text
    return model.generate(f"{text}\n{cue}", SETTINGS.replace(stop=("\n",))).text
