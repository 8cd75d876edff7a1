"""Generation tasks: summarisation, translation, QA and code as YAML tasks with references, scored
by the reference libraries (rouge-score, sacrebleu, SQuAD's EM/F1, pass@k run in a child Python), and
judged by any llmlab model on a rubric, with the judge's agreement with people beside its scores.

    spec.py       the task YAML (prompt template, reference columns, generation settings, metrics,
                  rubric) and the rows of a data file
    metrics.py    ROUGE, BLEU, chrF, exact match, F1, pass@k, with intervals
    execution.py  a completion + its HumanEval test in a child Python: timeout, limits, no network
    judge.py      rubric scores, agreement with human scores, pairwise judging in both orders
    run.py        a model x task as a stored, resumable run of kind ``generation``
    report.py     the tables, files, and re-opening from the store
    cli.py        ``llmlab eval [DATA] --task TASK`` when the task is a generation task
    tasks/        built-in tasks (summarise, translate, qa, code) with small samples written for llmlab

What it gives up: single-turn prompts only (no few-shot strategies or multi-turn tasks); the code
runner is a guard against accidents, not a sandbox for hostile code.
"""

from .metrics import pass_at_k
from .report import GenResult
from .run import run_gentask
from .spec import GenTask, builtin_names, is_generation, list_tasks, load

__all__ = ["GenResult", "GenTask", "builtin_names", "is_generation", "list_tasks", "load", "pass_at_k",
           "run_gentask"]
