"""``llmlab probe``: run responsible-use probe suites on models; figures with the answers behind them.

    llmlab probe                                        # smollm2, every built-in suite
    llmlab probe -m smollm2 -m gemma3-270m --suite hallucination --samples 5 --out probe-results
    llmlab probe --suite my_suite.yaml --judge smollm2   # a suite you wrote, graded by an LLM judge
    llmlab probe --list                                 # the built-in suites and their checks

Suites are checked before any model loads, so a typo in a suite file costs nothing. Each model x
suite is a probe run in the store, every answer stored as it is judged: Ctrl-C or a kill loses at
most the answer in hand, and the same command continues where it stopped (``--fresh`` starts anew).
``llmlab runs`` lists the runs; ``llmlab runs show ID`` re-opens one's report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .main import BalanceOpt, ConcurrencyOpt, RpmOpt, TpmOpt, app, err


@app.command()
def probe(
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="model to probe (repeatable; default smollm2)")] = None,
    suite: Annotated[list[str] | None, typer.Option(
        "--suite", "-s", help="built-in suite name or suite .yaml file (repeatable; default: all built-in)")]
    = None,
    samples: Annotated[int | None, typer.Option(
        "--samples", help="samples per prompt (default: each suite's own)")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="write results.json, results.csv, figures.csv and report.md here")] = None,
    judge: Annotated[str | None, typer.Option(
        "--judge", help="an LLM judge model to grade answers instead of the rules")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N prompts of each check")]
    = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        "--max-new-tokens", "-n", help="cap on each check's max_new_tokens")] = None,
    n_ctx: Annotated[int | None, typer.Option("--n-ctx", help="context window to allocate")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="CPU threads per local model (default: every core; 1 is faster on a busy machine)")]
    = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="ask again instead of resuming a stored run")]
    = False,
    examples: Annotated[bool, typer.Option(
        "--examples/--no-examples", help="print every answer with its verdict")] = True,
    list_suites: Annotated[bool, typer.Option("--list", help="list the built-in suites and exit")] = False,
    concurrency: ConcurrencyOpt = 1,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    balance: BalanceOpt = None,
):
    """Probe models for hallucination, non-determinism, bias, outdated knowledge and reasoning."""
    from rich.console import Console

    from ..probes import builtin_suites, count_generations, load_suite
    from ..probes.runner import check_positive

    console = Console()
    if list_suites:
        _list(console, [load_suite(n) for n in builtin_suites()])
        return
    check_positive("--samples", samples)
    check_positive("--limit", limit)
    check_positive("--max-new-tokens", max_new_tokens)
    if out is not None:
        from ..config import prepare_out

        prepare_out(out)
    suites = [load_suite(s) for s in (suite or builtin_suites())]
    models = model or ["smollm2"]
    from ..models.registry import check_options, load_options, resolve

    options = load_options(n_ctx=n_ctx, threads=threads, rpm=rpm, tpm=tpm, balance=balance)
    for name in models + ([judge] if judge else []):
        resolve(name)  # an unknown model or a bad option fails here, before anything loads
        check_options(name, options)
    try:
        runs = _run_all(models, suites, samples, limit, max_new_tokens, options, judge, console, examples,
                        fresh, concurrency)
    except KeyboardInterrupt as exc:  # a RunInterrupted says what is stored and how to resume
        err(str(exc) or "interrupted")
        raise typer.Exit(130) from None
    if out is not None:
        from ..probes.report import write_outputs

        try:
            paths = write_outputs(runs, out)
        except OSError as exc:
            from ..errors import ConfigError

            raise ConfigError(f"could not write the results into {out}: {exc.strerror or exc} "
                              f"({exc.filename or out}); the runs are saved in the store as probe runs "
                              f"{', '.join(str(r.id) for r in runs)}") from None
        err("wrote " + ", ".join(str(p) for p in paths))
    total = sum(count_generations(s, samples, limit) for s in suites) * len(models)
    resumed = sum(1 for r in runs if r.resumed)
    err(f"{total} answers from {len(models)} model(s) on {len(suites)} suite(s); "
        f"probe runs {', '.join(str(r.id) for r in runs)} saved to the store"
        + (f" ({resumed} resumed from it)" if resumed else "")
        + f"; `llmlab runs show {' '.join(str(r.id) for r in runs)}` re-opens this report")


def _run_all(models, suites, samples, limit, max_new_tokens, options, judge, console, examples, fresh,
             concurrency=1):
    from ..models.registry import load_model
    from ..probes import run_suite
    from ..probes.report import print_run, print_summary
    from ..runs import progress_bar
    from ..store import Store

    store = Store.open()
    judge_model = load_model(judge, **options) if judge else None
    runs = []
    try:
        for name in models:
            m = load_model(name, **options)
            try:
                for s in suites:
                    with progress_bar(transient=True) as bar:
                        run = run_suite(m, s, samples=samples, limit=limit, max_new_tokens=max_new_tokens,
                                        judge_model=judge_model, store=store, fresh=fresh, bar=bar,
                                        concurrency=concurrency)
                    print_run(run, console, examples)
                    runs.append(run)
            finally:
                m.close()
    finally:
        if judge_model is not None:
            judge_model.close()
        store.close()
    if len(runs) > 1:
        print_summary(runs, console)
    return runs


def _list(console, suites) -> None:
    from rich.table import Table

    table = Table(title="built-in probe suites (llmlab probe --suite NAME, or a .yaml file of your own)")
    for col in ("suite", "check", "measure", "judge", "prompts", "description"):
        table.add_column(col, overflow="fold")
    for s in suites:
        for c in s.checks:
            table.add_row(s.name, c.name, c.measure, c.judge.type if c.judge else "none", str(len(c.items)),
                          c.description)
    console.print(table)
