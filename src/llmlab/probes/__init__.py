"""Responsible-use probes: hallucination, non-determinism, bias, outdated knowledge, reasoning.

Each probe turns a drawback the lesson shows with one prompt into a measurement: a figure, the
answers behind it and a judge a person can read. A suite (YAML, see docs/probes.md) is a list of
checks; a check is prompts (items), generation settings, a judge and a measure.

    >>> from llmlab import load_model
    >>> from llmlab.probes import load_suite, run_suite
    >>> run = run_suite(load_model("smollm2"), load_suite("reasoning"))     # doctest: +SKIP
    >>> for f in run.figures: print(f.label, f.value, f.basis, f.hits)      # doctest: +SKIP
"""

from .judges import Judge, Verdict, make_judge
from .measures import Figure, Record
from .runner import ProbeRun, count_generations, run_suite
from .suite import Check, Item, Suite, builtin_suites, load_suite

__all__ = ["Check", "Figure", "Item", "Judge", "ProbeRun", "Record", "Suite", "Verdict", "builtin_suites",
           "count_generations", "load_suite", "make_judge", "run_suite"]
