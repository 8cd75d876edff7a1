"""``llmlab bench``: load time, time to first token, prefill and decode tokens/s and peak memory.

    llmlab bench                                           # smollm2 at 16, 128 and 512 prompt tokens
    llmlab bench -m smollm2 -m gemma3-270m -m hf/smollm2 --repeats 5 --out bench-results

Each model x repeat runs in a fresh process (see llmlab/bench.py for why). Prints a table of medians
with the spread over repeats, and writes results.json, results.csv and bench.png to --out (default:
a time-stamped folder under the data directory).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .main import app, err


@app.command()
def bench(
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="model to measure, backend/name (repeatable; default smollm2)")] = None,
    prompt_lengths: Annotated[str, typer.Option(
        "--prompt-lengths", help="prompt lengths in tokens, comma-separated")] = "16,128,512",
    repeats: Annotated[int, typer.Option("--repeats", "-r", help="fresh processes per model")] = 3,
    new_tokens: Annotated[int, typer.Option("--new-tokens", help="tokens generated per prompt")] = 32,
    n_ctx: Annotated[int | None, typer.Option("--n-ctx", help="context window to allocate")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="CPU threads per model (default: every core)")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="write results.json, results.csv and bench.png here")] = None,
):
    """Measure speed and memory per model and backend, at several prompt lengths, with repeats."""
    from datetime import datetime

    from rich.console import Console

    from ..bench import parse_lengths, run_bench, write_chart
    from ..bench_report import cost_notes, table, write_csv
    from ..config import data_dir, prepare_out

    lengths = parse_lengths(prompt_lengths)
    if out is not None:
        prepare_out(out)
    from ..runs import progress_bar
    from ..store import Store

    console = Console()
    store = Store.open()
    try:
        with progress_bar(transient=True) as bar:
            result = run_bench(model or ["smollm2"], lengths, repeats, new_tokens, n_ctx, threads,
                               store=store, bar=bar)
    except KeyboardInterrupt as exc:  # the measurements finished so far are stored as an unfinished run
        if getattr(exc, "run_id", None) is not None:
            err(f"interrupted: {exc.done} of {exc.planned} measurements are stored as bench run "
                f"{exc.run_id}; a benchmark starts anew when run again")
        else:
            err("interrupted")
        raise typer.Exit(130) from None
    finally:
        store.close()
    console.print(table(result))
    for note in cost_notes(result):
        console.print(note, style="dim", markup=False)
    if "llama_cpp" in result.settings["machine"]:
        err(result.settings["machine"]["llama_cpp"]["summary"])
    # a local-time folder name, not a timestamp of record (those are checks.utc_now)
    out = out or data_dir() / "bench" / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    write_csv(result, out / "results.csv")
    chart = write_chart(result, out / "bench.png")
    err(f"wrote {out / 'results.json'}, {out / 'results.csv'}, {chart}; stored as bench run "
        f"{result.run_id} (`llmlab runs show {result.run_id}` re-opens the table)")
