"""Reading a label out of free text, with rules a person can predict.

1. With an ``extract`` pattern (chain-of-thought's ``Answer: ...``), the last match is what is read;
   when there is no match the whole output is read instead.
2. If the text read is a label or a synonym (ignoring case, spaces, punctuation, markdown) -> it.
3. Else, if it mentions labels or synonyms as whole words and they all name the same label -> it.
4. Else it is unparseable (``None``): no mention, or mentions of two labels ("not positive but
   negative"). Unparseable outputs are counted as their own column, never mapped to a class.

What it gives up: negation ("not positive") is read as a mention of "positive".
"""

from __future__ import annotations

import re
from functools import lru_cache

from .spec import TaskSpec, _key

UNPARSED = "(unparsed)"


def parse_label(output: str, task: TaskSpec, extract: str = "") -> str | None:
    """The label an output names, or None.

    >>> from llmlab.tasks import load_task
    >>> parse_label("The sentiment of the text is POSITIVE.", load_task("sentiment"))
    'positive'
    >>> parse_label("Positive or negative, hard to say", load_task("sentiment")) is None
    True
    """
    text = output or ""
    if extract:
        matches = list(re.finditer(extract, text, re.IGNORECASE))
        if matches:
            found = _read(matches[-1].group(1), task)
            if found is not None:
                return found
    return _read(text, task)


def _read(text: str, task: TaskSpec) -> str | None:
    whole = task.normalise(text.replace("**", ""))
    if whole is not None:
        return whole
    pattern, lookup = _mentions(tuple(task.labels), tuple(sorted(task._lookup().items())))
    named = {lookup[_key(m.group(0))] for m in pattern.finditer(text.casefold())}
    return named.pop() if len(named) == 1 else None


@lru_cache(maxsize=64)
def _mentions(labels: tuple[str, ...], table: tuple[tuple[str, str], ...]):
    words = sorted((w for w, _ in table), key=len, reverse=True)  # longest first: "very good" > "good"
    alternation = "|".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])"), dict(table)
