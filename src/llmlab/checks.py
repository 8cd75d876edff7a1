"""The little checks every part of llmlab makes, written once: did-you-mean, whole numbers, timestamps.

A leaf module (it imports only ``errors``), so any layer -- settings, spec files, the CLI, the store --
can use it without pulling anything else in. Each helper gives one clear line, in the same words
wherever it is used.

What it gives up: these are deliberately small; anything with a richer rule (a range with a meaning,
such as ``seed`` or ``top_k``) keeps its own message next to the setting it describes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import UTC, datetime

from .errors import ConfigError


def did_you_mean(word, choices: Iterable, *, cutoff: float = 0.6) -> str:
    """The hint to append to an "unknown ..." message: the closest choice, or ``""`` when none is close.

    >>> "unknown key 'lables'" + did_you_mean("lables", ["labels", "name"])
    "unknown key 'lables' (did you mean 'labels'?)"
    >>> did_you_mean("zzz", ["labels"])
    ''
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def whole_number(name: str, value, *, least: int = 1, error: type[Exception] = ConfigError) -> int:
    """``value`` when it is an int >= ``least`` (``True`` is not a number here), else ``error``.

    >>> whole_number("--samples", 3)
    3
    >>> whole_number("--samples", 0)
    Traceback (most recent call last):
    ...
    llmlab.errors.ConfigError: --samples must be a whole number >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise error(f"{name} must be a whole number >= {least}, got {value!r}")
    return value


def utc_now(timespec: str = "seconds") -> str:
    """Now, in UTC, as ISO 8601 with its offset: ``2025-01-01T12:00:00+00:00`` (how llmlab stamps
    runs, results and calls; ``timespec`` is ``datetime.isoformat``'s)."""
    return datetime.now(UTC).isoformat(timespec=timespec)
