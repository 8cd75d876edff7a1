"""Running a flow: one text, or every row of a dataset as a stored, resumable run.

    >>> from llmlab.flows import load_flow, run_flow
    >>> result = run_flow(load_flow("examples/flows/triage.yaml"), data="examples/flows/reviews.csv",
    ...                   out="triage-out")                        # doctest: +SKIP
    >>> result.frame   # doctest: +SKIP
    (one row per input: id, the data's columns, each step's output, error)

Over a dataset a flow is a run like evaluations and probes (``llmlab.runs``): one unit per row, keyed
by the row's id, holding each step's output, raw answer, seconds and the id of its call in the call
log. A finished row is stored at once, so Ctrl-C loses at most the row in hand, and the same command
resumes; a changed flow, data file or model file starts a fresh run. Each row also stores what its
steps spent per model (``llmlab.tally``), which the report prices. Every step's call is logged in
the store the run lives in (a loaded model that already logs elsewhere keeps its own log). A row
whose step fails -- an answer that does not match the schema, a prompt beyond the context window, a
field its output lacks -- keeps the outputs before it and that step's one-line error, and the run
goes on. One ``--input`` text is not stored as a run (its calls are logged all the same), so running
it again asks the model again.

What it gives up: rows run one after another; a row is the smallest thing that resumes, so Ctrl-C in
a row's third step recomputes its first two.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..chat import Message
from ..errors import ConfigError, DataError, FlowError, LlmlabError
from ..runs import RunKind, Unit, execute, model_identity, progress_bar
from ..specfile import render
from ..tasks import UNPARSED, parse_label
from ..tasks.prompts import labels_text, plain_text
from .spec import Flow, Step

OUTPUT_FILES = ("outputs.jsonl", "outputs.csv")


@dataclass
class Rows:
    """The inputs of a flow: each row's id and cells (text; an empty cell is ''), and which column is
    ``{{ input }}``."""

    source: str
    ids: list[str]
    records: list[dict]
    columns: list[str]
    input_column: str | None = None
    notes: list[str] = field(default_factory=list)

    def inputs(self) -> list[str]:
        col = self.input_column
        return [r[col] if col else "" for r in self.records]

    def digest(self) -> str:
        data = json.dumps([self.ids, self.records, self.input_column], ensure_ascii=False)
        return hashlib.sha256(data.encode()).hexdigest()


def single(text: str) -> Rows:
    """One ``--input`` text as the rows of a flow."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("--input is empty; give the text the flow starts from")
    return Rows("--input", ["1"], [{"input": text}], ["input"], "input")


def read_rows(flow: Flow, data, *, input_col: str | None = None, id_col: str | None = None,
              limit: int | None = None) -> Rows:
    """A dataset file read and checked against what the flow reads, before any model loads."""
    from ..evals.data import TEXT_NAMES, _as_text, _blank, _ids, read_table

    if isinstance(data, Rows):
        return data
    frame = read_table(data)
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.reset_index(drop=True)
    name = str(data)
    if frame.empty:
        raise DataError(f"{name} has no rows")
    if limit:
        frame = frame.head(limit)
    columns = list(frame.columns)
    flow.check_data(columns, name)
    ids = _ids(frame, id_col, name)
    records = [{c: "" if _blank(v) else _as_text(v) for c, v in zip(columns, values, strict=True)}
               for values in frame.itertuples(index=False)]
    rows = Rows(name, ids, records, columns)
    if not flow.reads("input"):
        return rows
    col = input_col or flow.input_column
    if col is None:
        lower = {c.casefold().strip(): c for c in columns}
        col = next((lower[n] for n in ("input", *TEXT_NAMES) if n in lower), None)
        if col is None:
            raise DataError(f"cannot tell which column of {name} is {{{{ input }}}}; its columns: "
                            f"{', '.join(columns)}; pass --input-col or set `input:` in the flow")
        rows.notes.append(f"{{{{ input }}}} is the column {col!r} (--input-col sets it)")
    elif col not in columns:
        from ..checks import did_you_mean

        raise DataError(f"{name} has no column {col!r} for {{{{ input }}}}{did_you_mean(col, columns)}; "
                        f"its columns: {', '.join(columns)}")
    blank = [i for i, r in zip(ids, records, strict=True) if not r[col].strip()]
    if blank:
        raise DataError(f"{name}: row {', '.join(blank[:5])} has no text in the input column {col!r}")
    rows.input_column = col
    return rows


# --- one row -----------------------------------------------------------------------------------------


def prompt_for(step: Step, model, values: dict):
    """The step's prompt for ``model``: chat messages, or the same turns as plain text for a base
    model (``Answer:`` last, as task prompts end)."""
    if step.labels is not None:
        values = {**values, "labels_text": labels_text(step.labels.labels)}
    msgs = [Message(role, render(text, values, FlowError).strip())
            for role, text in (("system", step.system), ("user", step.prompt)) if text]
    return msgs if model.chats else plain_text(msgs)


def read_answer(step: Step, response):
    """A step's output: the parsed JSON value, the label, or the text."""
    if step.schema is not None:
        return response.json()
    if step.labels is not None:
        return parse_label(response.text, step.labels) or UNPARSED
    return response.text.strip()


def run_row(flow: Flow, models: dict, text: str, row: dict) -> dict:
    """Every step of the flow on one input, in order; the first failing step ends the row."""
    values = {"input": text, "row": row}
    out = {"outputs": {}, "raw": {}, "calls": {}, "seconds": {}, "error": None}
    for step in flow.steps:
        model = models[flow.model_of(step)]
        start = time.perf_counter()
        try:
            response = model.generate(prompt_for(step, model, values), step.config)
            out["raw"][step.name] = response.text
            out["calls"][step.name] = response.log_id
            value = read_answer(step, response)
        except LlmlabError as exc:
            out["error"] = f"step {step.name!r}: {exc}"
            break
        finally:
            out["seconds"][step.name] = round(time.perf_counter() - start, 4)
        out["outputs"][step.name] = values[step.name] = value
    return out


class FlowKind(RunKind):
    """A flow over rows as a kind of run: one unit per row, keyed by the row's id."""

    kind = "flow"
    tally = True  # each row stores what its steps spent, per model

    def __init__(self, flow: Flow, rows: Rows, models: dict, store):
        self.flow, self.rows, self.models = flow, rows, models
        self.model, self.subject, self.label = flow.model, flow.name, f"flow {flow.name}"
        self.ident = {"flow": flow.fingerprint(), "rows": rows.digest(),
                      "models": {name: model_identity(m, store) for name, m in models.items()}}

    def identity(self) -> dict:
        return self.ident

    def header(self) -> dict:
        return {"flow": self.flow.name, "flow_source": self.flow.source, "dataset": self.rows.source,
                "steps": [s.name for s in self.flow.steps], "n_rows": len(self.rows.ids),
                "input_column": self.rows.input_column, "columns": self.rows.columns,
                "models": self.flow.models}

    def plan(self) -> list[Unit]:
        data = zip(self.rows.ids, self.rows.inputs(), self.rows.records, strict=True)
        return [Unit(i, n, (text, row)) for n, (i, text, row) in enumerate(data)]

    def run_unit(self, unit: Unit) -> dict:
        return run_row(self.flow, self.models, *unit.payload)

    def summarise(self, results: dict[str, dict]) -> dict:
        return {"errors": sum(1 for r in results.values() if r["error"]), "rows": len(results)}


# --- the whole run -----------------------------------------------------------------------------------


@dataclass
class FlowResult:
    flow_name: str
    steps: list[str]
    rows: Rows
    results: list[dict]        # per row, in order: outputs, raw, calls, seconds, error
    run_id: int | None = None
    resumed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def cost(self) -> tuple:
        """Tokens, CPU time and estimated cost per model of the flow's steps, from every row's stored
        usage: (table or None, notes, model -> figures)."""
        from ..tally import cost_section

        return cost_section(self.results)

    def outputs(self, step: str) -> list:
        """One step's output per row (None where the row failed before or at that step)."""
        return [r["outputs"].get(step) for r in self.results]

    def records(self) -> list[dict]:
        """One JSON-able record per row: id, the row's cells, each step's output, calls and error."""
        return [{"id": i, "row": row, "outputs": r["outputs"], "calls": r["calls"], "error": r["error"],
                 "usage": r.get("usage")}
                for i, row, r in zip(self.rows.ids, self.rows.records, self.results, strict=True)]

    @property
    def frame(self):
        """A DataFrame: id, the data's columns, one column per step (a JSON value as JSON text), error."""
        import pandas as pd

        table = []
        for rec in self.records():
            cells = {"id": rec["id"], **rec["row"]}
            for step in self.steps:
                value = rec["outputs"].get(step)
                cells[step] = value if value is None or isinstance(value, str) else json.dumps(value)
            table.append({**cells, "error": rec["error"] or ""})
        return pd.DataFrame(table)

    def save(self, out) -> list[Path]:
        """outputs.jsonl (JSON values as they are) and outputs.csv (one column per step) in ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        jsonl = out / OUTPUT_FILES[0]
        jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records()),
                         encoding="utf-8")
        csv = out / OUTPUT_FILES[1]
        self.frame.to_csv(csv, index=False)
        return [jsonl, csv]


def run_flow(flow: Flow, data=None, *, text: str | None = None, input_col: str | None = None,
             id_col: str | None = None, limit: int | None = None, models: dict | None = None,
             model_options: dict | None = None, db=None, fresh: bool = False, progress: bool = False,
             out=None) -> FlowResult:
    """Run ``flow`` on one ``text`` or on every row of ``data`` (a file, or ``Rows``).

    ``models`` maps names the flow uses to models already loaded (used as they are); other names are
    loaded (with ``model_options``: n_ctx, n_threads ...) and closed afterwards. Over a dataset the
    run is stored in ``db`` (the call log) and resumed when started again unless ``fresh``.
    """
    if (data is None) == (text is None):
        raise ConfigError("give the flow one --input TEXT or a --data FILE")
    if text is not None:
        flow.check_data([], "--input", single=True)
        rows = single(text)
    else:
        rows = read_rows(flow, data, input_col=input_col, id_col=id_col, limit=limit)
    if out is not None:
        from ..config import prepare_out

        prepare_out(out)
    from ..models.registry import check_options, load_model
    from ..store import Store

    given = dict(models or {})
    for name in flow.models:  # an option a backend does not take fails before any model loads
        if name not in given:
            check_options(name, model_options or {})
    store = db if isinstance(db, Store) else Store.open(db)
    loaded, owned, logging = {}, [], []
    try:
        for name in flow.models:
            if name in given:
                loaded[name] = given[name]
            else:
                loaded[name] = load_model(name, log=False, **(model_options or {}))
                owned.append(loaded[name])
        for step in flow.steps:
            if step.schema is not None:
                loaded[flow.model_of(step)].require(
                    "grammar", f"step {step.name!r} has a json_schema: give it a llamacpp/ model")
        for model in loaded.values():
            if model.logger is None:  # each step's call goes to the call log beside the run
                model.logger = store.log_response
                logging.append(model)
        kind = FlowKind(flow, rows, loaded, store)
        with progress_bar(progress and text is None) as bar:
            outcome = execute(kind, store if text is None else None, fresh=fresh, progress=bar)
    finally:
        for model in logging:
            model.logger = None
        for model in owned:
            model.close()
        if store is not db:
            store.close()
    notes = list(rows.notes)
    if outcome.resumed:
        notes.append(f"resumed from the store: {outcome.resumed} of {len(rows.ids)} rows were done")
    result = FlowResult(flow.name, [s.name for s in flow.steps], rows, list(outcome.results.values()),
                        outcome.run_id, outcome.resumed, notes)
    if out is not None:
        result.save(out)
    return result


def show_runs(store, rows: list[dict], fmt: str, console) -> str | None:
    """Stored flow runs re-opened (``llmlab runs show ID``): each row's step outputs, from the store."""
    from ..runs.table import Table
    from ..tally import cost_section, show_with_cost

    tables, units = [], []
    for run in rows:
        h = run["header"]
        steps = h.get("steps") or []
        table = Table(["id", *steps, "error"], title=f"flow {h.get('flow')} on {h.get('dataset')} "
                      f"(run {run['id']}, {run['done']}/{run['planned']} rows)", title_justify="left")
        for key, r in store.units(run["id"]).items():
            units.append(r)
            cells = [r["outputs"].get(s) for s in steps]
            table.add_row(key, *(c if c is None or isinstance(c, str) else json.dumps(c) for c in cells),
                          r.get("error") or "")
        tables.append(table)
    cost, notes, _ = cost_section(units, reopened=True)
    return show_with_cost(tables, cost, notes, fmt, console)
