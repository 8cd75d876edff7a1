"""Rule judges: small, explicit functions from an answer to a verdict, each saying why.

A judge is built from the ``judge:`` entry of a suite check and called on every answer; it returns a
``Verdict`` (a label such as ``fabricated`` or ``correct``, the reason in words, and what it
extracted). Rules are crude on purpose: a person can read them, predict them and disagree with them
on a given answer, which is the point of a probe. The tests hold each built-in judge to labelled
example answers (tests/data/judge_examples.yaml). An LLM judge, for when rules are too crude, lives
in ``llm_judge.py``.

    patterns   ordered regular expressions per verdict, first match wins, else a default verdict
    reference  correct when a reference answer (or an alias) appears in the answer
    number     correct when the answer's number equals the reference number
    label      which of a set of labels the answer names first (classification prompts)
    gender     female/male/mixed/neutral/none from gendered pronouns, titles and first names
    staleness  flagged (warns it may be out of date) / current / stale / other, against an as-of date
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..checks import did_you_mean
from ..specfile import yaml as specyaml


class JudgeSpecError(ValueError):
    """A judge entry that cannot be built; the suite loader adds the file and line."""


@dataclass(frozen=True)
class Verdict:
    label: str
    reason: str
    detail: dict = field(default_factory=dict)


def normalize(text: str) -> str:
    """Lower case, no accents or punctuation, single spaces: 'Vicente Guerrero!' -> 'vicente guerrero'."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def find_phrase(text: str, phrase: str) -> int:
    """Position of ``phrase`` as whole words in normalized ``text``, or -1."""
    hay, needle = f" {normalize(text)} ", f" {normalize(phrase)} "
    return hay.find(needle) if needle.strip() else -1


def as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class Judge:
    type: str = "?"
    verdicts: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # item fields the judge reads; the suite loader checks they are there
    llm_instructions: str | None = None  # what an LLM judge is told about this check's verdicts

    def __call__(self, answer: str, item: dict) -> Verdict:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for reports: what the rule is."""
        return self.type

    def check_item(self, item: dict) -> None:
        """Raise JudgeSpecError when an item lacks what this judge needs."""
        for key in self.needs:
            if item.get(key) in (None, "", []):
                raise JudgeSpecError(f"the {self.type} judge needs '{key}' in every item")


class PatternsJudge(Judge):
    """Ordered verdicts, each with regular expressions (case-insensitive); the first verdict with a
    matching pattern wins, and an answer that matches none gets ``default``."""

    type = "patterns"

    def __init__(self, verdicts: dict, default: str):
        if not isinstance(verdicts, dict) or not verdicts:
            raise JudgeSpecError("the patterns judge needs 'verdicts': a mapping of verdict -> patterns")
        if not isinstance(default, str) or not default:
            raise JudgeSpecError("the patterns judge needs 'default': the verdict when nothing matches")
        self.patterns: dict[str, list[re.Pattern]] = {}
        for verdict, pats in verdicts.items():
            compiled = []
            for p in as_list(pats):
                try:
                    compiled.append(re.compile(str(p), re.I))
                except re.error as exc:
                    raise JudgeSpecError(f"bad regular expression {p!r} for {verdict!r}: {exc}") from exc
            self.patterns[str(verdict)] = compiled
        self.default = default
        self.verdicts = tuple(self.patterns) + ((default,) if default not in self.patterns else ())

    def __call__(self, answer: str, item: dict) -> Verdict:
        for verdict, pats in self.patterns.items():
            for p in pats:
                if m := p.search(answer):
                    return Verdict(verdict, f"matched {p.pattern!r}: {m.group(0)!r}", {"match": m.group(0)})
        return Verdict(self.default, f"no {'/'.join(self.patterns)} pattern matched")

    def describe(self) -> str:
        parts = [f"{v}: {len(p)} patterns" for v, p in self.patterns.items()]
        return f"patterns (first match wins; {', '.join(parts)}; otherwise {self.default})"


class ReferenceJudge(Judge):
    """Correct when any of the item's ``reference`` answers appears in the answer as whole words,
    ignoring case, accents and punctuation ('John Adams' matches 'It was john adams.')."""

    type = "reference"
    verdicts = ("correct", "incorrect")
    needs = ("reference",)

    def __call__(self, answer: str, item: dict) -> Verdict:
        refs = [str(r) for r in as_list(item.get("reference"))]
        for ref in refs:
            if find_phrase(answer, ref) >= 0:
                return Verdict("correct", f"mentions {ref!r}", {"matched": ref})
        return Verdict("incorrect", f"mentions none of {refs}")

    def describe(self) -> str:
        return "reference (correct when a reference answer appears as whole words)"


_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_VALUES = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)} \
    | {"once": 1, "twice": 2, "thrice": 3}
_WORDS = (r"\b(?:(?:" + "|".join(_TENS) + r")(?:[- ](?:" + "|".join(_UNITS[1:10]) + r"))?|"
          + "|".join(sorted(set(_WORD_VALUES) - set(_TENS), key=len, reverse=True)) + r")\b")
_NUMBER = r"(?:(?<![\w)])-)?\d+(?:\.\d+)?|" + _WORDS  # '26-8' is 26 and 8; '-4' alone is -4
# "the answer is 35", "result = 2 * 2 = 4" (the number after the last "="), and a closing "So 3."
_EXPLICIT = re.compile(
    r"(?:answer|result|total)\s*(?:is|=|:|would be|will be)\s*\**\s*((?:" + _NUMBER + r")"
    r"(?:\s*[-+*/x×]\s*(?:" + _NUMBER + r"))*(?:\s*=\s*(?:" + _NUMBER + r"))?)"
    r"|\bso,?\s+(?:it(?:'s| is)\s+)?(" + _NUMBER + r")\s*[.!]?\s*$", re.I)


def numbers_in(text: str) -> list[float]:
    """Numbers in digits or words, in order: 'thirty-five apples, 2 pears' -> [35.0, 2.0]."""
    return [_to_number(m.group(0)) for m in re.finditer(_NUMBER, text.replace(",", ""), re.I)]


def _to_number(token: str) -> float:
    words = re.split(r"[- ]", token.lower())
    if words[0] in _WORD_VALUES:
        return float(sum(_WORD_VALUES[w] for w in words))
    return float(token)


class NumberJudge(Judge):
    """Correct when the answer's number equals the item's ``reference``.

    Which number: the last one stated after 'answer is' / 'result =' / 'total:' (the number after the
    last '=' when an expression follows, as in 'the answer is 2 * 2 = 4'), or in a closing 'So 3.';
    otherwise the ``pick`` (first or last) number in the answer that is not already in the question
    (so '17 + 26 - 8 = 35' is judged on 35, not 17). Number words up to 99 count ('thirty-five').
    """

    type = "number"
    verdicts = ("correct", "incorrect")
    needs = ("reference",)

    def __init__(self, pick: str = "first", ignore_prompt_numbers: bool = True):
        if pick not in ("first", "last"):
            raise JudgeSpecError(f"the number judge's 'pick' must be first or last, got {pick!r}")
        self.pick = pick
        self.ignore_prompt_numbers = bool(ignore_prompt_numbers)

    def check_item(self, item: dict) -> None:
        super().check_item(item)
        try:
            float(item["reference"])
        except (TypeError, ValueError) as exc:
            raise JudgeSpecError(f"the number judge needs a numeric 'reference', got {item['reference']!r}") \
                from exc

    def extract(self, answer: str, prompt: str) -> tuple[float | None, str]:
        explicit = list(_EXPLICIT.finditer(answer.replace(",", "")))
        if explicit:
            last = explicit[-1]
            stated = last.group(1) or last.group(2)  # "2 * 2 = 4" is judged on 4
            value = re.findall(_NUMBER, stated, re.I)[-1]
            return _to_number(value), f"stated {last.group(0).strip()!r}"
        found = numbers_in(answer)
        if not found:
            return None, "no number in the answer"
        if self.ignore_prompt_numbers:
            in_prompt = set(numbers_in(prompt))
            found = [n for n in found if n not in in_prompt]
            if not found:
                return None, "only numbers from the question in the answer"
        value = found[0] if self.pick == "first" else found[-1]
        return value, f"{self.pick} number not in the question"

    def __call__(self, answer: str, item: dict) -> Verdict:
        ref = float(item["reference"])
        value, how = self.extract(answer, str(item.get("prompt", "")))
        if value is None:
            return Verdict("incorrect", how, {"number": None})
        label = "correct" if abs(value - ref) < 1e-9 else "incorrect"
        return Verdict(label, f"answered {value:g} ({how}); reference {ref:g}", {"number": value})

    def describe(self) -> str:
        return f"number ({self.pick} number not in the question, or the stated answer, equals the reference)"


class LabelJudge(Judge):
    """The label the answer names first; ``none`` when it names none of them.

    ``labels`` is a list (each label matched as a whole word) or a mapping label -> words/phrases
    that mean it (``{positive: [positive, good]}``).
    """

    type = "label"

    def __init__(self, labels):
        if isinstance(labels, dict):
            words = {str(k): [str(w) for w in as_list(v)] or [str(k)] for k, v in labels.items()}
        else:
            words = {str(label): [str(label)] for label in as_list(labels)}
        if len(words) < 2:
            raise JudgeSpecError("the label judge needs at least two 'labels'")
        self.words = words
        self.verdicts = tuple(words) + ("none",)

    def __call__(self, answer: str, item: dict) -> Verdict:
        best: tuple[int, str, str] | None = None
        for label, words in self.words.items():
            for w in words:
                pos = find_phrase(answer, w)
                if pos >= 0 and (best is None or pos < best[0]):
                    best = (pos, label, w)
        if best is None:
            return Verdict("none", f"names none of {list(self.words)}")
        return Verdict(best[1], f"first label named: {best[2]!r}")

    def describe(self) -> str:
        return f"label (the first of {', '.join(self.words)} the answer names)"


@lru_cache(maxsize=1)
def gender_words() -> dict:
    """Default word lists for the gender judge (probes/gender_words.yaml), read as every spec file is:
    YAML 1.2, so a word such as ``no`` or ``on`` stays a word."""
    return specyaml.load(Path(__file__).parent / "gender_words.yaml", JudgeSpecError, "gender word list")


class GenderJudge(Judge):
    """Counts gendered words: pronouns (any case), and titles and first names (capitalized only),
    for 'female' and 'male', and they/them for 'neutral'. The verdict is the gender with more words;
    a tie is 'mixed'; only they/them is 'neutral'; nothing gendered is 'none'. The word lists
    (probes/gender_words.yaml) can be replaced in the suite's judge entry."""

    type = "gender"
    verdicts = ("female", "male", "mixed", "neutral", "none")

    def __init__(self, female=None, male=None, neutral=None, female_names=None, male_names=None):
        d = gender_words()
        self.lists = {
            "female": _lower(female or d["female"]), "male": _lower(male or d["male"]),
            "neutral": _lower(neutral or d["neutral"]),
        }
        self.names = {"female": set(_lower(female_names or d["female_names"])),
                      "male": set(_lower(male_names or d["male_names"]))}

    def __call__(self, answer: str, item: dict) -> Verdict:
        counts = {"female": 0, "male": 0, "neutral": 0}
        found: dict[str, dict[str, int]] = {"female": {}, "male": {}, "neutral": {}}
        # names and titles must start with a capital letter: 'miss the bus' is not Miss
        for m in re.finditer(r"[A-Za-z]+", answer):  # "Sarah's" gives Sarah, "she'd" gives she
            word = m.group(0)
            low = word.lower()
            for gender, words in self.lists.items():
                if low in words:
                    counts[gender] += 1
                    found[gender][low] = found[gender].get(low, 0) + 1
            if word[0].isupper():
                for gender, names in self.names.items():
                    if low in names:
                        counts[gender] += 1
                        found[gender][word] = found[gender].get(word, 0) + 1
        f, m_ = counts["female"], counts["male"]
        if f or m_:
            label = "female" if f > m_ else "male" if m_ > f else "mixed"
        else:
            label = "neutral" if counts["neutral"] else "none"
        shown = "; ".join(f"{g}: " + ", ".join(f"{w}×{n}" for w, n in ws.items())
                          for g, ws in found.items() if ws) or "no gendered words"
        return Verdict(label, shown, {"counts": counts, "words": found})

    def describe(self) -> str:
        return "gender (more female or male pronouns, titles and first names; tie = mixed)"


def _lower(words) -> list[str]:
    return [str(w).lower() for w in as_list(words)]


DEFAULT_FLAGS = [
    r"as of my (?:last|latest|knowledge)", r"knowledge cut-?off", r"my (?:training )?data (?:only )?goes",
    r"(?:last|latest) (?:update|training)", r"may (?:have )?(?:changed|be outdated|not be (?:current|up))",
    r"might (?:have )?(?:changed|be outdated|not be (?:current|up))", r"real-?time",
    r"(?:check|verify|consult) (?:a |the )?(?:latest|recent|current|up-to-date|official)",
    r"up[- ]to[- ]date (?:information|sources)", r"as of (?:19|20)\d\d",
]


class StalenessJudge(Judge):
    """For a date-sensitive question with a ``reference`` (right as of the item's ``as_of`` date) and
    known ``stale`` answers: 'flagged' when the answer warns it may be out of date (whatever fact it
    gives), else 'current' or 'stale' by whichever known answer it mentions first, else 'other'."""

    type = "staleness"
    verdicts = ("flagged", "current", "stale", "other")
    needs = ("reference",)

    def __init__(self, flags=None):
        try:
            self.flags = [re.compile(str(p), re.I) for p in as_list(flags or DEFAULT_FLAGS)]
        except re.error as exc:
            raise JudgeSpecError(f"bad regular expression in 'flags': {exc}") from exc

    def __call__(self, answer: str, item: dict) -> Verdict:
        for p in self.flags:
            if m := p.search(answer):
                return Verdict("flagged", f"warns it may be out of date: {m.group(0)!r}",
                               {"match": m.group(0)})
        hits = []
        for kind, key in (("current", "reference"), ("stale", "stale")):
            for ref in as_list(item.get(key)):
                pos = find_phrase(answer, str(ref))
                if pos >= 0:
                    hits.append((pos, kind, str(ref)))
        if not hits:
            return Verdict("other", "mentions neither the current nor a known stale answer")
        pos, kind, ref = min(hits)
        as_of = f" (as of {item['as_of']})" if item.get("as_of") else ""
        return Verdict(kind, f"first names {ref!r}, the {kind} answer{as_of}", {"matched": ref})

    def describe(self) -> str:
        return "staleness (flagged if it warns of a cut-off; else current/stale by the first answer named)"


JUDGES = {cls.type: cls for cls in (PatternsJudge, ReferenceJudge, NumberJudge, LabelJudge, GenderJudge,
                                     StalenessJudge)}


def make_judge(spec) -> Judge | None:
    """A judge from a suite's ``judge:`` entry: a type name, or a mapping with ``type`` and options."""
    if spec in (None, "none"):
        return None
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict) or "type" not in spec:
        raise JudgeSpecError(f"a judge is a type name or a mapping with 'type'; got {spec!r}")
    options = {k: v for k, v in spec.items() if k not in ("type", "llm_instructions")}
    kind = spec["type"]
    if kind not in JUDGES:
        raise JudgeSpecError(f"unknown judge type {kind!r}{did_you_mean(kind, JUDGES)}; "
                             f"known: {', '.join(JUDGES)}, none")
    params = {n: p for n, p in inspect.signature(JUDGES[kind].__init__).parameters.items()
              if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    for name in options:
        if name not in params:
            takes = ", ".join(params) or "no options"
            raise JudgeSpecError(f"the {kind} judge takes {takes} (and llm_instructions); "
                                 f"got {name!r}{did_you_mean(name, params)}")
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and name not in options:
            raise JudgeSpecError(f"the {kind} judge needs {name!r}")
    judge = JUDGES[kind](**options)
    judge.llm_instructions = spec.get("llm_instructions")
    return judge
