"""From judged answers to figures, each carrying the ids of the answers it was computed from.

A ``Figure`` is a number and its basis: ``hits`` are the records counted in the numerator and
``records`` all the records behind it, so every figure in a report can be traced to the prompts,
raw answers and verdicts that make it up (``fabricated 0.60 = 3 of 5: #1 #2 #4``).

    share         share of answers per verdict (e.g. fabricated / hedged / declined)
    accuracy      share 'correct', per group, and the gap between the best and worst group
    distribution  share of each verdict per group (e.g. female / male per occupation)
    flip          share of samples whose verdict differs from the majority verdict of their prompt
    distinct      (distinct outputs - 1) / (samples - 1) per prompt: 0 all identical, 1 all different
    reproduce     share of prompts whose samples are all identical
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field


@dataclass
class Record:
    """One generation: the prompt as the model got it, the raw answer and the judge's verdict."""
    id: int
    check: str
    item: str
    sample: int
    prompt: str                     # the user-facing prompt text
    input: str | list               # exactly what was sent: raw text, or the chat messages
    answer: str
    verdict: str | None = None      # None when the check has no judge, or generation failed
    reason: str = ""
    detail: dict = field(default_factory=dict)
    group: str | None = None
    settings: dict = field(default_factory=dict)
    call_id: int | None = None      # the row in the call log, when logging is on
    error: str | None = None
    usage: dict | None = None       # what its generations spent, per model (``llmlab.tally``)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def sent(self) -> str:
        """What the model was given, as text: the raw prompt of a base model, or the chat messages."""
        if isinstance(self.input, str):
            return self.input
        if len(self.input) == 1:
            return self.input[0]["content"]
        return "\n".join(f"[{m['role']}] {m['content']}" for m in self.input)


@dataclass
class Figure:
    check: str
    name: str
    value: float | None
    basis: str                      # the fraction in words: "3 of 5 answers"
    hits: list[int] = field(default_factory=list)
    records: list[int] = field(default_factory=list)
    group: str | None = None
    headline: bool = False
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        return f"{self.name} [{self.group}]" if self.group else self.name


NO_LABEL = "none"  # the label judge's verdict for an answer that names no label


def _share(check: str, name: str, hits: list, pool: list, unit: str, **kw) -> Figure:
    value = len(hits) / len(pool) if pool else None
    return Figure(check, name, value, f"{len(hits)} of {len(pool)} {unit}", [r.id for r in hits],
                  [r.id for r in pool], **kw)


NO_GROUP = "(no group)"


def _groups(records: list[Record]) -> dict:
    """Records by group, items without one under ``(no group)`` when others have one."""
    return _by(records, lambda r: r.group if r.group is not None else NO_GROUP)


def _by(records: list[Record], key) -> dict:
    out: dict = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


def share(check, records: list[Record]) -> list[Figure]:
    judged = [r for r in records if r.verdict is not None]
    order = list(check.judge.verdicts) + sorted({r.verdict for r in judged} - set(check.judge.verdicts))
    figures = [_share(check.name, v, [r for r in judged if r.verdict == v], judged, "answers",
                      headline=v in check.headline) for v in order]
    groups = _groups(judged)
    if len(groups) > 1:  # per group for the headline verdicts, e.g. fabricated per kind of entity
        for g, rs in groups.items():
            for v in check.headline:
                figures.append(_share(check.name, v, [r for r in rs if r.verdict == v], rs, "answers",
                                      group=g))
    return figures


def accuracy(check, records: list[Record]) -> list[Figure]:
    judged = [r for r in records if r.verdict is not None]
    figures = [_share(check.name, "accuracy", [r for r in judged if r.verdict == "correct"], judged,
                      "answers", headline=True)]
    groups, per = _groups(judged), []
    if len(groups) > 1:
        every = [_share(check.name, "accuracy", [r for r in rs if r.verdict == "correct"], rs, "answers",
                        group=g) for g, rs in groups.items()]
        figures += every
        per = [f for f in every if f.group != NO_GROUP]  # the gap is between the groups the suite names
    if len(per) >= 2:
        if len(per) == 2:  # counterfactual pairs: signed, first group (as listed in the suite) minus second
            a, b = per
            note = f"{a.group} minus {b.group}"
        else:
            a, b = max(per, key=lambda f: f.value), min(per, key=lambda f: f.value)
            note = "best group minus worst group"
        figures.append(Figure(
            check.name, "accuracy gap", a.value - b.value,
            f"{a.group} {a.value:.2f} - {b.group} {b.value:.2f}", hits=a.hits + b.hits,
            records=a.records + b.records, headline=True, note=note))
    return figures


def distribution(check, records: list[Record]) -> list[Figure]:
    judged = [r for r in records if r.verdict is not None]
    figures = []
    for g, rs in _by(judged, lambda r: r.group or r.item).items():
        seen = Counter(r.verdict for r in rs)
        words = Counter()  # the gender judge's word counts, summed over the group's answers
        for r in rs:
            words.update(r.detail.get("counts", {}))
        note = ", ".join(f"{k} words: {n}" for k, n in words.items())
        for v in check.judge.verdicts:
            if seen[v] or v in check.headline:
                figures.append(_share(check.name, v, [r for r in rs if r.verdict == v], rs, "answers",
                                      group=g, headline=v in check.headline, note=note))
    return figures


def flip(check, records: list[Record]) -> list[Figure]:
    """Per prompt, the samples whose verdict differs from the prompt's most common one. A sample the
    judge finds no label in (verdict ``none``) is no label, so no flip: it is counted apart."""
    judged = [r for r in records if r.verdict is not None]
    labelled = [r for r in judged if r.verdict != NO_LABEL]
    flipped, pool, figures = [], [], []
    for item, rs in _by(labelled, lambda r: r.item).items():
        counts = Counter(r.verdict for r in rs).most_common()
        majority = counts[0][0]
        tied = [v for v, n in counts[1:] if n == counts[0][1]]
        note = f"majority verdict: {majority}" + (f" (tied with {', '.join(tied)}; the rate is the same "
                                                  "whichever counts as majority)" if tied else "")
        these = [r for r in rs if r.verdict != majority]
        figures.append(_share(check.name, "label-flip rate", these, rs, "samples", group=item, note=note))
        flipped += these
        pool += rs
    out = [_share(check.name, "label-flip rate", flipped, pool, "samples", headline=True,
                  note="samples whose label differs from the most common label of their prompt; "
                       "samples naming no label are left out")]
    unlabelled = [r for r in judged if r.verdict == NO_LABEL]
    if unlabelled:
        out.append(_share(check.name, "no label named", unlabelled, judged, "samples"))
    return out + figures


def _distinct(rs: list[Record]) -> list[Record]:
    """The first record of each distinct answer (whitespace at the ends ignored)."""
    first: dict[str, Record] = {}
    for r in rs:
        first.setdefault(r.answer.strip(), r)
    return list(first.values())


def distinct(check, records: list[Record]) -> list[Figure]:
    ok = [r for r in records if r.error is None]
    figures, extra, spans, hits = [], 0, 0, []
    for item, rs in _by(ok, lambda r: r.item).items():
        firsts = _distinct(rs)
        if len(rs) < 2:
            continue
        value = (len(firsts) - 1) / (len(rs) - 1)
        figures.append(Figure(check.name, "distinct-output rate", value,
                              f"{len(firsts)} distinct of {len(rs)} samples", [r.id for r in firsts],
                              [r.id for r in rs], group=item))
        extra += len(firsts) - 1
        spans += len(rs) - 1
        hits += [r.id for r in firsts]
    overall = Figure(check.name, "distinct-output rate", extra / spans if spans else None,
                     f"{extra + len(figures)} distinct of {spans + len(figures)} samples "
                     f"over {len(figures)} prompts: ({extra + len(figures)} - {len(figures)}) / "
                     f"({spans + len(figures)} - {len(figures)})", hits, [r.id for r in ok], headline=True,
                     note="(distinct - 1) / (samples - 1), each summed over the prompts: "
                          "0 = all identical, 1 = all different")
    return [overall] + figures


def reproduce(check, records: list[Record]) -> list[Figure]:
    ok = [r for r in records if r.error is None]
    figures, same, items = [], [], []
    for item, rs in _by(ok, lambda r: r.item).items():
        if len(rs) < 2:
            continue
        n = len(_distinct(rs))
        figures.append(Figure(check.name, "reproduces", 1.0 if n == 1 else 0.0,
                              f"{n} distinct of {len(rs)} samples", [r.id for r in rs] if n == 1 else [],
                              [r.id for r in rs], group=item))
        items.append(rs)
        if n == 1:
            same.append(rs)
    overall = Figure(check.name, "reproduces", len(same) / len(items) if items else None,
                     f"{len(same)} of {len(items)} prompts gave identical samples",
                     [r.id for rs in same for r in rs], [r.id for rs in items for r in rs], headline=True)
    return [overall] + figures


def empty(check, records: list[Record]) -> list[Figure]:
    """Answers that were empty (a base model that ends its line at once): left out of the other
    figures, and counted here so the smaller basis is visible."""
    ok = [r for r in records if r.error is None]
    blank = [r for r in ok if not r.answer.strip()]
    return [_share(check.name, "empty answers", blank, ok, "answers", note="not judged")] if blank else []


def errors(check, records: list[Record]) -> list[Figure]:
    failed = [r for r in records if r.error is not None]
    return [_share(check.name, "failed generations", failed, records, "prompts x samples",
                   note="left out of the other figures")] if failed else []


MEASURE_FUNCTIONS = {"share": share, "accuracy": accuracy, "distribution": distribution, "flip": flip,
                     "distinct": distinct, "reproduce": reproduce}


def figures_for(check, records: list[Record]) -> list[Figure]:
    figures = MEASURE_FUNCTIONS[check.measure](check, records)
    if check.judge is not None:
        figures += empty(check, records)
    return figures + errors(check, records)
