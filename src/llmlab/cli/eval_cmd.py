"""``llmlab eval``: evaluate a prompted task on a labelled file, and ``--list-tasks``.

Everything heavy (pandas, scikit-learn, the model) is imported inside the command. Ctrl-C stops the
run with every finished item already in the store; the same command resumes it. Each system is a
run in the store: ``llmlab runs show ID...`` re-opens the report without a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .main import BalanceOpt, ConcurrencyOpt, RpmOpt, TpmOpt, app, err

Repeatable = list[str] | None


@app.command("eval")
def eval_command(
    dataset: Annotated[Path | None, typer.Argument(
        help="labelled file: .csv, .tsv, .jsonl or .parquet", show_default=False)] = None,
    task: Annotated[str, typer.Option("--task", "-T", help="built-in task name or a task .yaml file")]
    = "sentiment",
    model: Annotated[Repeatable, typer.Option(
        "--model", "-m", help="model to evaluate (repeatable: -m A -m B)")] = None,
    method: Annotated[Repeatable, typer.Option(
        "--method", help="score | generate | calibrate | batch-calibrate (repeatable)")] = None,
    strategy: Annotated[Repeatable, typer.Option(
        "--strategy", "-s", help="zero-shot | few-shot | role | chain-of-thought | structured | all "
        "(repeatable; default: the task's default)")] = None,
    recipe: Annotated[Repeatable, typer.Option(
        "--recipe", "-r", help="STRATEGY:METHOD, e.g. few-shot:batch-calibrate (repeatable; instead of "
        "every --strategy x --method)")] = None,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="comma-separated label set (for --task classify)")] = None,
    text_col: Annotated[str | None, typer.Option("--text-col", help="column with the text")] = None,
    label_col: Annotated[str | None, typer.Option("--label-col", help="column with the gold label")] = None,
    id_col: Annotated[str | None, typer.Option("--id-col", help="column with item ids")] = None,
    label_map: Annotated[Repeatable, typer.Option(
        "--label-map", help="VALUE=LABEL renaming of gold labels, e.g. 1=positive (repeatable)")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="write predictions.csv, report.json, report.md, confusion.png here")] = None,
    repeats: Annotated[int, typer.Option(
        "--repeats", help="sample each generate system N times (needs --temperature > 0)")] = 1,
    temperature: Annotated[float | None, typer.Option(
        "--temperature", "-t", help="for generate; default 0 (greedy)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="sampling seed (repeat k uses seed + k)")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        "--max-new-tokens", "-n", help="for generate; default: the strategy's (10 for most)")] = None,
    baseline: Annotated[bool, typer.Option(
        "--baseline/--no-baseline", help="add MiniLM embeddings + logistic regression (5-fold)")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N rows")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="recompute instead of resuming a stored run")]
    = False,
    n_ctx: Annotated[int | None, typer.Option("--n-ctx", help="context window to allocate")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="CPU threads per local model (default: every core; on a busy machine fewer "
        "can be many times faster)")] = None,
    list_tasks: Annotated[bool, typer.Option("--list-tasks", help="list the built-in tasks and exit")]
    = False,
    benchmark: Annotated[str | None, typer.Option(
        "--benchmark", "-b", help="score a multiple-choice benchmark file as lm-evaluation-harness does: "
        "arc | hellaswag | mmlu | truthfulqa-mc1 | truthfulqa-mc2 | winogrande (no FILE: llmlab's "
        "sample of that format)", show_default=False)] = None,
    num_fewshot: Annotated[int, typer.Option(
        "--num-fewshot", help="with --benchmark: solved examples before each question (the first ones "
        "of --fewshot-file, or of FILE without the item itself)")] = 0,
    fewshot_file: Annotated[Path | None, typer.Option(
        "--fewshot-file", help="with --benchmark: where few-shot examples come from (e.g. MMLU's dev "
        "split)", show_default=False)] = None,
    concurrency: ConcurrencyOpt = 1,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    balance: BalanceOpt = None,
    field: Annotated[Repeatable, typer.Option(
        "--field", help="with --benchmark: NAME=COLUMN for a file in another layout, e.g. "
        "question=prompt or choices=options.text (repeatable)")] = None,
    judge: Annotated[str | None, typer.Option(
        "--judge", help="generation tasks: a model that scores each output on the task's rubric",
        show_default=False)] = None,
    judge_labelled: Annotated[Path | None, typer.Option(
        "--judge-labelled", help="with --judge: outputs with a human_score column, to report the judge's "
        "agreement with people (default: the task's labelled sample)", show_default=False)] = None,
    pairwise: Annotated[bool, typer.Option(
        "--pairwise", help="with --judge and two -m: judge the two models' outputs against each other, in "
        "both orders")] = False,
):
    """Evaluate a prompted task on a labelled dataset: accuracy, macro-F1 with 95% CIs, McNemar tests."""
    from ..gentasks import cli as gen_cli

    if list_tasks:
        _list_tasks()
        gen_cli.list_tasks()
        return
    if benchmark is None and gen_cli.wants(task, judge, pairwise, judge_labelled):
        gen_cli.run(dataset, task, model, judge=judge, pairwise=pairwise, labelled=judge_labelled,
                       limit=limit, fresh=fresh, out=out, n_ctx=n_ctx, threads=threads, report=_report,
                       remote={"rpm": rpm, "tpm": tpm, "balance": balance, "concurrency": concurrency},
                       generation={k: v for k, v in (("temperature", temperature), ("seed", seed),
                                                     ("max_new_tokens", max_new_tokens)) if v is not None},
                       others={"--method": method, "--strategy": strategy, "--recipe": recipe,
                               "--labels": labels, "--baseline": baseline, "--repeats": repeats != 1,
                               "--text-col": text_col, "--label-col": label_col, "--id-col": id_col,
                               "--label-map": label_map, "--num-fewshot": num_fewshot,
                               "--fewshot-file": fewshot_file, "--field": field})
        return
    if benchmark is not None:
        remote = {"rpm": rpm, "tpm": tpm, "balance": balance, "concurrency": concurrency}
        _benchmark(dataset, benchmark, model, num_fewshot, fewshot_file, field, limit, fresh, out, n_ctx,
                   threads, remote, others={"--task": task != "sentiment", "--method": method,
                                    "--strategy": strategy, "--recipe": recipe, "--labels": labels,
                                    "--baseline": baseline, "--repeats": repeats != 1, "--text-col": text_col,
                                    "--label-col": label_col})
        return
    if num_fewshot or fewshot_file or field:
        err("error: --num-fewshot, --fewshot-file and --field go with --benchmark")
        raise typer.Exit(2)
    if dataset is None:
        err("error: give a DATASET file (or --list-tasks)")
        raise typer.Exit(2)
    from ..checks import whole_number
    from ..errors import ConfigError
    from ..evals.api import evaluate
    from ..models.registry import load_options
    from ..tasks import load_task

    if limit is not None:
        whole_number("--limit", limit)
    if out is not None:
        from ..config import prepare_out

        prepare_out(out)
    generation = {k: v for k, v in (("temperature", temperature), ("seed", seed),
                                    ("max_new_tokens", max_new_tokens)) if v is not None}
    if repeats > 1 and not temperature:
        raise ConfigError("--repeats needs sampling: add --temperature (e.g. 0.7); "
                          "greedy runs repeat exactly")
    if recipe and (strategy or method):
        raise ConfigError("give --recipe STRATEGY:METHOD pairs, or --strategy and --method, not both")
    strategies = strategy or None
    if strategies and "all" in strategies:
        strategies = list(load_task(task).strategies)
    _report(lambda: evaluate(
        dataset, task, models=model or ["smollm2"], methods=method or ["score"],
        strategies=strategies, labels=_split(labels),
        columns={"text": text_col, "label": label_col, "id": id_col},
        label_map=_pairs(label_map), generation=generation, repeats=repeats, baseline=baseline,
        limit=limit, fresh=fresh, progress=True, out=out, recipes=recipe, concurrency=concurrency,
        model_options=load_options(n_ctx=n_ctx, threads=threads, rpm=rpm, tpm=tpm, balance=balance)),
        out and f"{out}/predictions.csv, report.json, report.md, confusion.png")


def _report(call, wrote: str | None) -> None:
    """Run the evaluation; print its report and where it is stored, or say how to resume it."""
    try:
        result = call()
    except KeyboardInterrupt as exc:
        run_id = getattr(exc, "run_id", None)  # a RunInterrupted says which run and how far
        where = f" ({exc.done} of {exc.planned} items of run {run_id})" if run_id is not None else ""
        err(f"interrupted: finished items are stored; run the same command again to resume{where}")
        raise typer.Exit(130) from None
    result.print()
    if wrote:
        err(f"wrote {wrote}")
    ids = " ".join(str(r.run_id) for r in result.runs if r.run_id is not None)
    err(f"stored as runs {ids}: `llmlab runs show {ids}` re-opens this report")


def _benchmark(dataset, benchmark, model, num_fewshot, fewshot_file, field, limit, fresh, out, n_ctx, threads,
               remote: dict, others: dict) -> None:
    from ..benchmarks import run_benchmark
    from ..errors import ConfigError
    from ..models.registry import load_options

    given = [name for name, value in others.items() if value]
    if given:
        raise ConfigError(f"{', '.join(given)} do not apply to --benchmark: a benchmark has its own prompt, "
                          "choices and log-likelihood scoring")
    fields = _pairs(field, "--field", "NAME=COLUMN")
    _report(lambda: run_benchmark(dataset, benchmark, model or ["smollm2"], num_fewshot=num_fewshot,
                                  fewshot_data=fewshot_file, fields=fields, limit=limit, fresh=fresh,
                                  progress=True, out=out, concurrency=remote.pop("concurrency"),
                                  model_options=load_options(n_ctx=n_ctx, threads=threads, **remote)),
            out and f"{out}/predictions.csv, report.json, report.md")


def _split(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _pairs(items: list[str] | None, option: str = "--label-map", shape: str = "VALUE=LABEL") -> dict | None:
    from ..errors import ConfigError

    if not items:
        return None
    out = {}
    for item in items:
        value, sep, label = item.partition("=")
        if not sep or not value.strip() or not label.strip():
            raise ConfigError(f"{option} wants {shape}, got {item!r}")
        out[value.strip()] = label.strip()
    return out


def _list_tasks() -> None:
    from rich.console import Console
    from rich.table import Table

    from ..tasks import list_tasks

    table = Table(title="built-in tasks (or pass --task path/to/task.yaml)")
    for col in ("task", "labels", "strategies", "description"):
        table.add_column(col)
    for t in list_tasks():
        table.add_row(t.name, ", ".join(t.labels) or "from --labels or the data",
                      ", ".join(f"{s}*" if s == t.default_strategy else s for s in t.strategies),
                      t.description)
    Console().print(table)
    print("* the default strategy")
