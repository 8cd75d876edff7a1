"""``llmlab flow``: run a chain of model calls declared in a YAML file, and score it.

    llmlab flow run examples/flows/triage.yaml --input "The kettle leaks and the lid broke."
    llmlab flow run examples/flows/triage.yaml --data examples/flows/reviews.csv --out triage-out
    llmlab flow eval examples/flows/triage.yaml --data examples/flows/reviews.csv --reference classify=label

Over a dataset a flow is a stored run: Ctrl-C keeps every finished row and the same command resumes;
``llmlab runs show ID`` re-opens its outputs. The flow file is checked (and its templates against the
data's columns) before any model loads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .foundation import NCtx, Threads
from .main import app, err

flow_app = typer.Typer(help="Chains of model calls from a YAML file: run them, score them.",
                       no_args_is_help=True)
app.add_typer(flow_app, name="flow")

FlowArg = Annotated[Path, typer.Argument(help="the flow .yaml file", show_default=False)]
DataOpt = Annotated[Path | None, typer.Option("--data", "-d", help="a .csv, .tsv, .jsonl or .parquet file; "
                                              "one chain per row")]
ModelOverride = Annotated[str | None, typer.Option(
    "--model", "-m", help="the flow's default model (steps that name a model keep it)")]
InputCol = Annotated[str | None, typer.Option("--input-col", help="the data column that is {{ input }}")]
IdCol = Annotated[str | None, typer.Option(
    "--id-col", help="column with row ids (default: id, else row numbers)")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="write outputs.jsonl and outputs.csv here")]
Limit = Annotated[int | None, typer.Option("--limit", help="only the first N rows")]
Fresh = Annotated[bool, typer.Option("--fresh", help="recompute instead of resuming a stored run")]


def _options(limit, n_ctx, threads) -> dict:
    from ..checks import whole_number
    from ..models.registry import load_options

    if limit is not None:
        whole_number("--limit", limit)
    return load_options(n_ctx=n_ctx, threads=threads)


@flow_app.command("run")
def run_command(
    flow_file: FlowArg,
    text: Annotated[str | None, typer.Option("--input", "-i", help="one text ('-' reads stdin)")] = None,
    data: DataOpt = None, model: ModelOverride = None, input_col: InputCol = None, id_col: IdCol = None,
    out: OutOpt = None, limit: Limit = None, fresh: Fresh = False, n_ctx: NCtx = None,
    threads: Threads = None,
):
    """Run a flow on one --input text (prints each step's output) or on every row of --data."""
    from ..errors import ConfigError
    from ..flows import load_flow, run_flow

    if (text is None) == (data is None):
        raise ConfigError("give --input TEXT or --data FILE (one of them)")
    if text == "-":
        from .foundation import read_stdin

        text = read_stdin()
    options = _options(limit, n_ctx, threads)
    flow = load_flow(flow_file).with_model(model)
    result = run_flow(flow, data, text=text, input_col=input_col, id_col=id_col, limit=limit,
                      model_options=options, fresh=fresh, progress=True, out=out)
    for note in result.notes:
        err(note)
    if text is not None:
        _print_single(result)
    else:
        _print_rows(result)
        _cost(result)
        _stored(result, out)


def _print_single(result) -> None:
    (record,) = result.records()
    for step in result.steps:
        if step in record["outputs"]:
            value = record["outputs"][step]
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)
            print(f"── {step}\n{shown}")
    if record["error"]:
        err(f"error: {record['error']}")
        raise typer.Exit(1)


def _print_rows(result) -> None:
    from rich.console import Console

    from ..runs.table import Column, Table

    t = Table(["id", *(Column(s, overflow="fold") for s in result.steps), "error"],
              title=f"flow {result.flow_name} on {result.rows.source}", title_justify="left")
    frame = result.frame
    for _, row in frame.iterrows():
        t.add_row(row["id"], *(row[s] for s in result.steps), row["error"])
    Console().print(t.to_rich())


def _cost(result) -> None:
    from rich.console import Console

    from ..tally import print_cost

    table, notes, _ = result.cost
    print_cost(table, notes, Console())


def _stored(result, out) -> None:
    failed = sum(1 for r in result.results if r["error"])
    if failed:
        err(f"{failed} of {len(result.results)} rows stopped at a failing step (see the error column)")
    if out is not None:
        err(f"wrote {out}/outputs.jsonl, outputs.csv")
    if result.run_id is not None:
        err(f"stored as run {result.run_id}: `llmlab runs show {result.run_id}` re-opens it")


@flow_app.command("eval")
def eval_command(
    flow_file: FlowArg,
    data: Annotated[Path, typer.Option("--data", "-d", help="a .csv, .tsv, .jsonl or .parquet file with "
                                       "reference columns", show_default=False)],
    reference: Annotated[list[str], typer.Option(
        "--reference", "-r", help="COLUMN (scores the last step, or --step), or STEP[.FIELD]=COLUMN "
        "(repeatable)", show_default=False)],
    step: Annotated[str | None, typer.Option("--step", "-s", help="the step a bare --reference COLUMN "
                                             "scores (default: the last)")] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="exact | f1 | chrf | bleu (repeatable; default: exact and f1 for a step with "
        "labels, exact and chrf otherwise)")] = None,
    model: ModelOverride = None, input_col: InputCol = None, id_col: IdCol = None, out: OutOpt = None,
    limit: Limit = None, fresh: Fresh = False, n_ctx: NCtx = None, threads: Threads = None,
):
    """Run a flow over --data (resuming a stored run) and score a step's outputs against a column."""
    from rich.console import Console

    from ..flows import evaluate_flow, load_flow

    options = _options(limit, n_ctx, threads)
    flow = load_flow(flow_file).with_model(model)
    evaluation = evaluate_flow(flow, data, reference, step=step, metrics=metric, input_col=input_col,
                               id_col=id_col, limit=limit, out=out, model_options=options, fresh=fresh,
                               progress=True)
    for note in evaluation.result.notes:
        err(note)
    Console().print(evaluation.table.to_rich())
    _cost(evaluation.result)
    sys.stdout.flush()
    _stored(evaluation.result, None)
    if out is not None:
        err(f"wrote {out}/outputs.jsonl, outputs.csv, scores.csv, scores.json")
