"""Standard multiple-choice benchmarks (ARC, HellaSwag, MMLU, TruthfulQA MC1/MC2, Winogrande) from
local files, scored by log-likelihood as lm-evaluation-harness scores them.

    formats.py   a file's rows -> items: the harness's prompts, choices and gold answers per format
    harness.py   reading files, few-shot prefixes, log-likelihoods, per-item metrics, standard errors
    run.py       a model x benchmark as a stored, resumable run (``llmlab eval FILE --benchmark``)
    samples/     a few items of each format written for llmlab, for tests and a first try

What it gives up: the benchmarks' data is not shipped or downloaded; a user points at the files.
"""

from .formats import FORMATS, Item
from .harness import load_items, loglikelihoods
from .run import BenchmarkResult, run_benchmark, sample_file

BENCHMARKS = tuple(FORMATS)

__all__ = ["BENCHMARKS", "FORMATS", "BenchmarkResult", "Item", "load_items", "loglikelihoods",
           "run_benchmark", "sample_file"]
