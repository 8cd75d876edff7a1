"""``llmlab eval [DATA] --task TASK`` when TASK is a generation task (built-in, or a YAML file with
``type: generation``); ``llmlab eval`` hands over here before its classification path.

    llmlab eval --task summarise -m smollm2 --judge smollm2        # the shipped sample, judged
    llmlab eval my.jsonl --task mytask.yaml -m A -m B --judge J --pairwise

What it gives up: the classification options (strategies, methods, labels, baseline) do not apply
and are refused rather than ignored.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import ConfigError


def wants(task: str, judge, pairwise: bool, labelled) -> bool:
    """Whether ``--task`` is a generation task; ``--judge``/``--pairwise`` with any other task is an
    error (they judge generated text)."""
    from .spec import is_generation

    if is_generation(task):
        return True
    given = [name for name, value in (("--judge", judge), ("--pairwise", pairwise),
                                      ("--judge-labelled", labelled)) if value]
    if given:
        raise ConfigError(f"{', '.join(given)} go with a generation task (`llmlab eval --list-tasks` lists "
                          f"them); {task!r} is a classification task")
    return False


def run(dataset, task: str, models, *, judge, pairwise: bool, labelled, limit, fresh, out, n_ctx, threads,
        generation: dict, others: dict, report, remote: dict | None = None) -> None:
    """Check what does not apply, then run and print through ``report`` (eval's ``_report``)."""
    from ..models.registry import load_options
    from .run import run_gentask
    from .spec import load

    given = [name for name, value in others.items() if value]
    if given:
        raise ConfigError(f"{', '.join(given)} do not apply to a generation task: it has its own prompt, "
                          "references and metrics")
    spec = load(task)
    if generation:
        spec = replace(spec, generation={**spec.generation, **generation})
        spec.config()  # a bad --temperature or --seed fails here, in one line
    if limit is not None:
        from ..checks import whole_number

        whole_number("--limit", limit)
    remote = dict(remote or {})
    concurrency = remote.pop("concurrency", 1)
    report(lambda: run_gentask(dataset, spec, models or ["smollm2"], judge=judge, pairwise=pairwise,
                               labelled=labelled, limit=limit, fresh=fresh, progress=True, out=out,
                               concurrency=concurrency,
                               model_options=load_options(n_ctx=n_ctx, threads=threads, **remote)),
           out and f"{out}/predictions.jsonl, report.json, report.md")


def list_tasks(console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from .spec import list_tasks as tasks

    table = Table(title="built-in generation tasks (or a .yaml with type: generation)")
    for col in ("task", "metrics", "judge rubric", "description"):
        table.add_column(col)
    for t in tasks():
        table.add_row(t.name, ", ".join(t.metrics), f"{t.rubric.low}-{t.rubric.high}" if t.rubric else "-",
                      t.description)
    (console or Console()).print(table)
