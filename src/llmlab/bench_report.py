"""The tables of a benchmark (``llmlab bench``): medians with their spread for the terminal and
markdown, one row per figure for CSV; and re-opening stored bench runs (``llmlab runs show``)."""

from __future__ import annotations

from pathlib import Path

from .runs import Column, Table


def _spread(stat, scale: float = 1.0, digits: int = 0) -> str:
    if stat.median is None:
        return "n/a"
    f = f"{{:.{digits}f}}"
    med = f.format(stat.median * scale)
    if len(stat.values) < 2 or stat.low == stat.high:
        return med
    return f"{med} ({f.format(stat.low * scale)}–{f.format(stat.high * scale)})"


def bench_table(result):
    """The medians with their spread, one row per model x prompt length (a ``llmlab.runs.Table``)."""

    s = result.settings
    load = s["machine"]["load_average"]
    threads = f"{s['threads']} threads" if s.get("threads") else "default threads"
    t = Table([Column(col, justify="left" if col in ("model", "backend") else "right", no_wrap=col == "model")
               for col in ("model", "backend", "prompt tokens", "load s", "TTFT ms", "prefill tok/s",
                           "decode tok/s", "peak RSS MB", "$ per 1k examples", "$ per 1M tokens")],
              title=f"median (min–max) over {s['repeats']} fresh processes per model; "
                    f"{s['new_tokens']} new tokens, greedy, {threads}; load average at start {load}",
              title_justify="left")
    seen = set()
    for r in result.rows:
        first = r["model"] not in seen
        seen.add(r["model"])
        t.add_row(r["model"] if first else "", r["backend"] if first else "", _spread(r["prompt_tokens"]),
                  _spread(r["load_s"], digits=2) if first else "", _spread(r["ttft_s"], 1000),
                  _spread(r["prefill_tps"]), _spread(r["decode_tps"], digits=1),
                  _spread(r["peak_rss"], 1e-6) if first else "", _money(r.get("cost_1k")),
                  _money(r.get("cost_1m")))
    return t


def _money(stat) -> str:
    from .cost import usd

    return "n/a" if stat is None or stat.median is None else usd(stat.median)


def cost_notes(result) -> list[str]:
    """What the cost columns are computed from, and why a figure is missing or $0."""
    rows = result.rows
    notes = list(dict.fromkeys(n for r in rows for n in r.get("cost_notes", [])))
    prices = rows[0].get("prices", "") if rows else ""
    words = (f"cost of one example = one generation at that prompt length, from the prices in {prices}"
             + (" today, not when it ran" if result.reopened else ""))
    return notes + [words]


def table(result):
    """The terminal table (rich) of ``bench_table``."""
    return bench_table(result).to_rich()


def csv_table(result):
    """One row per model x prompt length: median, min and max of each figure."""

    keys = ("prompt_tokens", "load_s", "ttft_s", "prefill_tps", "decode_tps", "peak_rss", "rss_after_load",
            "cost_1k", "cost_1m")
    columns = ["model", "backend", "length"] + [f"{k}_{s}" for k in keys for s in ("median", "min", "max")]
    return Table(columns,
                 [[r["model"], r["backend"], r["length"]]
                  + [getattr(r[k], s) for k in keys for s in ("median", "low", "high")] for r in result.rows])


def write_csv(result, path: Path) -> None:
    """One row per model x prompt length: median, min and max of each figure."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        fh.write(csv_table(result).to_csv())


def show_runs(store, rows: list[dict], fmt: str, console) -> str | None:
    """Stored bench runs re-opened: printed (``terminal``) or as markdown or CSV text."""
    from .bench import reopen

    results = [reopen(store, r) for r in rows]
    if fmt == "markdown":
        return "\n\n".join(bench_table(r).to_markdown() + "\n\n" + "\n".join(cost_notes(r))
                           for r in results) + "\n"
    if fmt == "csv":
        return "".join(csv_table(r).to_csv() for r in results)
    for r in results:
        console.print(bench_table(r).to_rich())
        for note in cost_notes(r):
            console.print(note, style="dim", markup=False)
    return None
