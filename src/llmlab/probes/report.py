"""Probe results for people: a terminal table, and results.json, results.csv, figures.csv, report.md.

Every figure is shown with its basis ("3 of 5 answers") and the numbers of the records it counts,
and every record is shown with its prompt, raw answer, verdict and the judge's reason, so no figure
stands without the examples behind it. The terminal clips long answers; the files keep them whole.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

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

def print_run(run: ProbeRun, console, examples: bool = True) -> None:
    from rich.markup import escape as e
    from rich.table import Table

    # everything shown comes from models and suite files: escaped, so '[CEO]' is not read as markup
    console.rule(f"[bold]{e(run.model)}[/] · suite [bold]{e(run.suite.name)}[/] · judge: {e(run.judge)} · "
                 f"{run.options.get('prompt_format')} prompts · {len(run.records)} answers")
    figures = Table(title="figures (records counted: see the answers below)", title_justify="left")
    for col in ("check", "figure", "value", "basis", "records counted"):
        figures.add_column(col, overflow="fold")
    for f in run.figures:
        style = "bold" if f.headline else None
        figures.add_row(e(f.check), e(f.label), fmt(f.value), e(f.basis), cite(f.hits, 12), style=style)
    console.print(figures)
    if not examples:
        return
    answers = Table(title="answers", title_justify="left")
    for col in ("#", "check", "item", "prompt (as sent)", "answer", "verdict", "why"):
        answers.add_column(col, overflow="fold")
    for r in run.records:
        verdict = r.verdict if r.error is None else "error"
        answers.add_row(str(r.id), e(r.check), e(r.item), e(clip(r.sent, 50)), e(clip(r.answer, 110)),
                        e(verdict or ""), e(clip(r.error or r.reason, 60)))
    console.print(answers)


def print_summary(runs: list[ProbeRun], console) -> None:
    from rich.markup import escape
    from rich.table import Table

    models, rows = headline_rows(runs)
    table = Table(title="probe summary (headline figures)", title_justify="left")
    for col in ("suite", "check", "figure", *models):
        table.add_column(escape(col), overflow="fold")
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    console.print(table)


# --- files -----------------------------------------------------------------------------------------

RECORD_COLUMNS = ["model", "suite", "run_id", "record", "check", "item", "group", "sample", "prompt",
                  "sent", "answer", "verdict", "reason", "error", "call_id"]
FIGURE_COLUMNS = ["model", "suite", "run_id", "check", "figure", "group", "value", "basis", "headline",
                  "hits", "records", "note"]


def _csv(path: Path, columns, rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        w.writerows(rows)


def write_outputs(runs: list[ProbeRun], out: Path) -> list[Path]:
    """results.json (everything), results.csv (one row per answer), figures.csv, report.md."""
    out.mkdir(parents=True, exist_ok=True)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    paths = [out / n for n in ("results.json", "results.csv", "figures.csv", "report.md")]
    paths[0].write_text(json.dumps({"created": created, "runs": [r.to_dict() for r in runs]},
                                   indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    _csv(paths[1], RECORD_COLUMNS,
         [[run.model, run.suite.name, run.id, r.id, r.check, r.item, r.group, r.sample, r.prompt, r.sent,
           r.answer, r.verdict, r.reason, r.error, r.call_id] for run in runs for r in run.records])
    _csv(paths[2], FIGURE_COLUMNS,
         [[run.model, run.suite.name, run.id, f.check, f.name, f.group, f.value, f.basis, f.headline,
           " ".join(map(str, f.hits)), " ".join(map(str, f.records)), f.note]
          for run in runs for f in run.figures])
    paths[3].write_text(markdown(runs, created), encoding="utf-8")
    return paths


def _cell(text) -> str:
    text = "" if text is None else str(text)
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _anchor(run: ProbeRun, record: int) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in f"{run.model}-{run.suite.name}").lower()
    return f"{slug}-{record}"


def markdown(runs: list[ProbeRun], created: str) -> str:
    lines = ["# llmlab probe report", "", f"Created {created}. Every figure lists the records it counts; "
             "each record below has the prompt, the model's raw answer and the judge's verdict.", ""]
    models, rows = headline_rows(runs)
    lines += ["## Summary (headline figures)", "", "| suite | check | figure | " + " | ".join(models) + " |",
              "|" + "---|" * (3 + len(models))]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    for run in runs:
        stored = f" Stored as probe run {run.id}." if run.id else ""
        lines += ["", f"## {run.model} · {run.suite.name}", "",
                  f"Suite file `{run.suite.path}` (sha256 {run.suite.sha256[:12]}), judge: {run.judge}, "
                  f"{run.options.get('prompt_format')} prompts, options: "
                  f"`{json.dumps(run.options)}`.{stored}",
                  "", _cell(run.suite.description)]
        for check in run.suite.checks:
            records = run.records_of(check.name)
            if not records:
                continue
            judge = check.judge.describe() if check.judge else "none (the raw text is compared)"
            lines += ["", f"### {check.name}", "", _cell(check.description), "",
                      f"Measure: `{check.measure}`. Judge: {judge}. Settings: "
                      f"`{json.dumps(records[0].settings)}`.", "",
                      "| figure | value | basis | records counted | of records |", "|---|---|---|---|---|"]
            for f in run.figures_of(check.name):
                links = " ".join(f"[#{i}](#{_anchor(run, i)})" for i in f.hits)
                name = f"**{f.label}**" if f.headline else f.label
                lines.append(f"| {_cell(name)} | {fmt(f.value)} | {_cell(f.basis)}"
                             f"{' — ' + _cell(f.note) if f.note else ''} | {links} | {cite(f.records)} |")
            header = "| # | item | sample | prompt (as sent) | answer | verdict | why |"
            lines += ["", header, "|---" * 7 + "|"]
            for r in records:
                verdict = "error" if r.error else (r.verdict or "")
                lines.append(f"| <a id=\"{_anchor(run, r.id)}\"></a>{r.id} | {_cell(r.item)} | {r.sample} | "
                             f"{_cell(r.sent)} | {_cell(r.answer)} | {_cell(verdict)} | "
                             f"{_cell(r.error or r.reason)} |")
    return "\n".join(lines) + "\n"
