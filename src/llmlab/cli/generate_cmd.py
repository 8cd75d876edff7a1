"""``llmlab generate-data``: labelled examples of a task written by a model (``tune/synthetic.py``).

    llmlab generate-data --task sentiment --n 60 -m smollm2 --out synthetic.jsonl
    llmlab eval synthetic.jsonl --task sentiment -m ollama/llama3.2:1b

Rows are written as they pass the filters, so Ctrl-C keeps them and the same command continues to
``--n``; ``--fresh`` starts the file again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .main import ModelOpt, app, err


@app.command("generate-data")
def generate_data_command(
    task: Annotated[str, typer.Option("--task", "-T", help="built-in task name or a task .yaml file")],
    n: Annotated[int, typer.Option("--n", help="rows wanted in --out (rows already there count)")],
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="the .jsonl or .csv file to write (appended)")],
    seed: Annotated[int, typer.Option("--seed", help="attempt k is generated with seed + k")] = 0,
    temperature: Annotated[float, typer.Option("--temperature", "-t", help="above 0")] = 0.8,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="per text")] = 80,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="comma-separated label set (for --task classify)")] = None,
    balance: Annotated[str, typer.Option(
        "--balance", help="balanced (the label with fewest rows next) | random (a seeded draw)")] \
        = "balanced",
    template: Annotated[str | None, typer.Option(
        "--template", help="jinja prompt (or a file holding one): {{ label }}, {{ description }}, "
        "{{ labels_text }}, {{ synonyms }}, {{ example }}, {{ examples }}, {{ role }}, {{ task }}")] = None,
    check_label: Annotated[str | None, typer.Option(
        "--check-label", help="keep a text only if the model labels it as intended: score | generate | "
        "calibrate, or STRATEGY:METHOD (slower; off by default)")] = None,
    near_duplicate: Annotated[float, typer.Option(
        "--near-duplicate", help="MiniLM cosine at or above which a text is a near copy")] = 0.92,
    min_chars: Annotated[int, typer.Option("--min-chars", help="shortest text kept")] = 20,
    max_chars: Annotated[int, typer.Option("--max-chars", help="longest text kept")] = 1000,
    max_attempts: Annotated[int | None, typer.Option(
        "--max-attempts", help="generations this run at most (default 3n + 10)")] = None,
    embedder: Annotated[str, typer.Option("--embedder", "-e", help="for near duplicates")] = "minilm",
    fresh: Annotated[bool, typer.Option("--fresh", help="start --out again instead of continuing it")] \
        = False,
    n_ctx: Annotated[int | None, typer.Option("--n-ctx", help="context window to allocate")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for a local model")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="server of an ollama/ or openai/ model")]
    = None,
):
    """Generate labelled examples of a task with a model: filtered, de-duplicated, with provenance."""
    from ..checks import whole_number
    from ..models.registry import check_options, load_model, load_options
    from ..tasks import load_task
    from ..tune.synthetic import Filters, _check_out, generate_data, rejects_path

    whole_number("--n", n)
    spec = load_task(task, labels=[x.strip() for x in labels.split(",")] if labels else None)
    _check_out(out)  # before the model loads: a bad --out should not cost a load
    if template and Path(template).expanduser().is_file():
        template = Path(template).expanduser().read_text(encoding="utf-8")
    options = load_options(n_ctx=n_ctx, threads=threads, base_url=base_url)
    check_options(model, options)
    loaded = load_model(model, **options)
    try:
        report = generate_data(
            spec, n, loaded, out, seed=seed, temperature=temperature, max_new_tokens=max_new_tokens,
            template=template, balance=balance, max_attempts=max_attempts, embedder=embedder,
            filters=Filters(min_chars=min_chars, max_chars=max_chars, near_duplicate=near_duplicate),
            check_label=check_label, fresh=fresh, progress=True)
    except KeyboardInterrupt:
        err(f"interrupted: the rows kept so far are in {out}; run the same command again to continue")
        raise typer.Exit(130) from None
    finally:
        loaded.close()
    report.print()
    if not report.reached:
        err(f"only {report.total} of {n} rows: raise --max-attempts, or look at why in "
            f"{rejects_path(out)}")
        raise typer.Exit(1)
