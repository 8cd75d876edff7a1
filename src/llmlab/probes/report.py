"""Probe results for people: a terminal table, and results.json, results.csv, figures.csv, report.md.

Every figure is shown with its basis ("3 of 5 answers") and the numbers of the records it counts,
and every record is shown with its prompt, raw answer, verdict and the judge's reason, so no figure
stands without the examples behind it. The terminal clips long answers; the files keep them whole.
Every table is a ``llmlab.runs.Table``, rendered to the terminal, markdown (one escaping rule) or CSV.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..checks import utc_now
from ..runs.table import Column, Raw, Table, md
from ..tally import cost_markdown
from .runner import ProbeRun


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def cite(ids: list[int], most: int | None = None) -> str:
    shown = ids if most is None or len(ids) <= most else ids[:most]
    text = " ".join(f"#{i}" for i in shown)
    return text + (f" … ({len(ids)})" if len(shown) < len(ids) else "")


def clip(text: str, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def headline_rows(runs: list[ProbeRun]) -> tuple[list[str], list[list[str]]]:
    """Summary: one row per headline figure, one column per model ('value (basis)')."""
    models = list(dict.fromkeys(r.model for r in runs))
    rows: dict[tuple, dict[str, str]] = {}
    for run in runs:
        for f in run.figures:
            if f.headline:
                key = (run.suite.name, f.check, f.label)
                rows.setdefault(key, {})[run.model] = f"{fmt(f.value)} ({f.basis})"
    return models, [[*k, *(cells.get(m, "") for m in models)] for k, cells in rows.items()]


# --- terminal --------------------------------------------------------------------------------------

def figures_table(run: ProbeRun) -> Table:
    t = Table([Column(c, overflow="fold") for c in ("check", "figure", "value", "basis", "records counted")],
              title="figures (records counted: see the answers below)", title_justify="left")
    for f in run.figures:
        t.add_row(f.check, f.label, fmt(f.value), f.basis, cite(f.hits, 12),
                  style="bold" if f.headline else None)
    return t


def answers_table(run: ProbeRun) -> Table:
    t = Table([Column(c, overflow="fold") for c in ("#", "check", "item", "prompt (as sent)", "answer",
                                                    "verdict", "why")], title="answers", title_justify="left")
    for r in run.records:
        verdict = r.verdict if r.error is None else "error"
        t.add_row(str(r.id), r.check, r.item, clip(r.sent, 50), clip(r.answer, 110), verdict or "",
                  clip(r.error or r.reason, 60))
    return t


def summary_table(runs: list[ProbeRun]) -> Table:
    models, rows = headline_rows(runs)
    t = Table([Column(c, overflow="fold") for c in ("suite", "check", "figure", *models)],
              title="probe summary (headline figures)", title_justify="left")
    for row in rows:
        t.add_row(*row)
    return t


def print_run(run: ProbeRun, console, examples: bool = True) -> None:
    from rich.markup import escape as e

    # everything shown comes from models and suite files: escaped, so '[CEO]' is not read as markup
    console.rule(f"[bold]{e(run.model)}[/] · suite [bold]{e(run.suite.name)}[/] · judge: {e(run.judge)} · "
                 f"{run.options.get('prompt_format')} prompts · {len(run.records)} answers")
    console.print(figures_table(run).to_rich())
    if examples:
        console.print(answers_table(run).to_rich())
    from ..tally import print_cost

    table, notes, _ = run.cost
    print_cost(table, notes, console)


def print_summary(runs: list[ProbeRun], console) -> None:
    console.print(summary_table(runs).to_rich())


# --- files -----------------------------------------------------------------------------------------

RECORD_COLUMNS = ["model", "suite", "run_id", "record", "check", "item", "group", "sample", "prompt",
                  "sent", "answer", "verdict", "reason", "error", "call_id"]
FIGURE_COLUMNS = ["model", "suite", "run_id", "check", "figure", "group", "value", "basis", "headline",
                  "hits", "records", "note"]


def records_table(runs: list[ProbeRun]) -> Table:
    """results.csv: one row per answer."""
    return Table(RECORD_COLUMNS, [[run.model, run.suite.name, run.id, r.id, r.check, r.item, r.group,
                                   r.sample, r.prompt, r.sent, r.answer, r.verdict, r.reason, r.error,
                                   r.call_id] for run in runs for r in run.records])


def figure_rows(runs: list[ProbeRun]) -> Table:
    """figures.csv: one row per figure."""
    return Table(FIGURE_COLUMNS, [[run.model, run.suite.name, run.id, f.check, f.name, f.group, f.value,
                                   f.basis, f.headline, " ".join(map(str, f.hits)),
                                   " ".join(map(str, f.records)), f.note]
                                  for run in runs for f in run.figures])


def write_outputs(runs: list[ProbeRun], out: Path) -> list[Path]:
    """results.json (everything), results.csv (one row per answer), figures.csv, report.md."""
    out.mkdir(parents=True, exist_ok=True)
    created = utc_now()
    paths = [out / n for n in ("results.json", "results.csv", "figures.csv", "report.md")]
    paths[0].write_text(json.dumps({"created": created, "runs": [r.to_dict() for r in runs]},
                                   indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    for path, table in ((paths[1], records_table(runs)), (paths[2], figure_rows(runs))):
        with path.open("w", newline="", encoding="utf-8") as fh:
            fh.write(table.to_csv())
    paths[3].write_text(markdown(runs, created), encoding="utf-8")
    return paths


def _anchor(run: ProbeRun, record: int) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in f"{run.model}-{run.suite.name}").lower()
    return f"{slug}-{record}"


def markdown(runs: list[ProbeRun], created: str) -> str:
    lines = ["# llmlab probe report", "", f"Created {created}. Every figure lists the records it counts; "
             "each record below has the prompt, the model's raw answer and the judge's verdict.", ""]
    lines += ["## Summary (headline figures)", "", summary_table(runs).to_markdown()]
    for run in runs:
        stored = f" Stored as probe run {run.id}." if run.id else ""
        lines += ["", f"## {run.model} · {run.suite.name}", "",
                  f"Suite file `{run.suite.path}` (sha256 {run.suite.sha256[:12]}), judge: {run.judge}, "
                  f"{run.options.get('prompt_format')} prompts, options: "
                  f"`{json.dumps(run.options)}`.{stored}",
                  "", md(run.suite.description)]
        for check in run.checks:
            records = run.records_of(check["name"])
            if not records:
                continue
            judge = check["judge"] or "none (the raw text is compared)"
            lines += ["", f"### {check['name']}", "", md(check["description"]), "",
                      f"Measure: `{check['measure']}`. Judge: {judge}. Settings: "
                      f"`{json.dumps(records[0].settings)}`.", ""]
            figures = Table(["figure", "value", "basis", "records counted", "of records"])
            for f in run.figures_of(check["name"]):
                links = " ".join(f"[#{i}](#{_anchor(run, i)})" for i in f.hits)
                name = Raw(f"**{md(f.label)}**") if f.headline else f.label
                figures.add_row(name, fmt(f.value), f.basis + (" — " + f.note if f.note else ""), Raw(links),
                                cite(f.records))
            answers = Table(["#", "item", "sample", "prompt (as sent)", "answer", "verdict", "why"])
            for r in records:
                verdict = "error" if r.error else (r.verdict or "")
                answers.add_row(Raw(f"<a id=\"{_anchor(run, r.id)}\"></a>{r.id}"), r.item, r.sample, r.sent,
                                r.answer, verdict, r.error or r.reason)
            lines += [figures.to_markdown(), "", answers.to_markdown()]
        table, notes, _ = run.cost
        if table is not None:
            lines += ["", cost_markdown(table, notes).replace("## ", "### ", 1)]
    return "\n".join(lines) + "\n"


def show_runs(store, rows: list[dict], fmt: str, console) -> str | None:
    """Stored probe runs re-opened: printed (``terminal``) or as markdown or CSV text."""
    from .runner import probe_run

    runs = [probe_run({**r["header"], "model": r["model"], "suite": r["subject"]}, store.units(r["id"]),
                      r["summary"] or {}, run_id=r["id"]) for r in rows]
    for run in runs:
        run.reopened = True  # its cost is at today's prices
    if fmt == "markdown":
        return markdown(runs, rows[0]["finished"] or rows[0]["created"])
    if fmt == "csv":
        return figure_rows(runs).to_csv()
    for run in runs:
        print_run(run, console)
    if len(runs) > 1:
        print_summary(runs, console)
    return None
