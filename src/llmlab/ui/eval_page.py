"""The Evaluate page: a labelled file, a task, strategies x methods (or recipes), models -> a report.

It calls ``llmlab.evaluate`` exactly as ``llmlab eval`` does, with the Workbench's loaded models
(held with ``wb.using`` for the whole run, so no other page generates with them meanwhile) and the
Workbench's store, so the run is listed on the Runs page and resumes like a CLI run. The report is
the one ``llmlab eval --out`` writes (``EvalResult.to_markdown``: the table with 95% intervals, the
McNemar tests between systems, each system's scikit-learn report), with the confusion matrices as
the same PNG, and the per-example predictions in a table that can show the errors alone.

What it gives up: the grid of settings the CLI has (repeats, temperature, baseline, label maps) is
cut to what a first evaluation needs; the CLI has the rest. A run holds its models' locks until it
ends, so a chat with the same model waits for it.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

# small labelled files shipped next to the package in a source checkout (examples/)
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"
SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")


def example_files() -> list[str]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix in SUFFIXES)


def build(wb) -> None:
    import gradio as gr

    from ..evals.methods import METHODS
    from ..evals.report import TABLE_COLUMNS
    from ..tasks import list_tasks

    tasks = [t.name for t in list_tasks()]
    examples = example_files()
    gr.Markdown("Evaluate a prompted task on a labelled file: accuracy and macro-F1 with 95% intervals, "
                "the confusion matrix, every prediction, and exact McNemar tests between systems.")
    with gr.Row():
        with gr.Column(min_width=280):
            data = gr.File(label="labelled file (.csv .tsv .jsonl .parquet)", file_types=list(SUFFIXES),
                           elem_id="eval-file")
            example = gr.Dropdown(examples, value=None, label="or an example file", elem_id="eval-example",
                                  allow_custom_value=False)
            limit = gr.Number(20, precision=0, minimum=0, label="only the first N rows (0 = all)",
                              elem_id="eval-limit")
        with gr.Column(min_width=280):
            task = gr.Dropdown(tasks, value="sentiment" if "sentiment" in tasks else tasks[0], label="task",
                               elem_id="eval-task")
            strategies = gr.CheckboxGroup(_strategies(task.value), value=[_default(task.value)],
                                          label="strategies", elem_id="eval-strategies")
            methods = gr.CheckboxGroup(list(METHODS), value=["score"], label="methods",
                                       elem_id="eval-methods")
            models = gr.Dropdown(wb.choices(), value=[wb.default_model], multiselect=True,
                                 allow_custom_value=True, label="models", elem_id="eval-models")
    with gr.Accordion("more settings", open=False):
        with gr.Row():
            recipes = gr.Textbox(label="recipes STRATEGY:METHOD, comma-separated (instead of the grid)",
                                 placeholder="few-shot:batch-calibrate, zero-shot:score",
                                 elem_id="eval-recipes")
            labels = gr.Textbox(label="labels, comma-separated (for the classify task)",
                                elem_id="eval-labels")
        with gr.Row():
            text_col = gr.Textbox(label="text column", placeholder="found by name",
                                  elem_id="eval-text-col")
            label_col = gr.Textbox(label="label column", placeholder="found by name",
                                   elem_id="eval-label-col")
            # 0, not blank: the browser turns a blank number into 0, which a minimum of 1 then refuses
            max_new = gr.Number(0, precision=0, minimum=0,
                                label="max new tokens (generate; 0: the strategy's)",
                                elem_id="eval-max-tokens")
            fresh = gr.Checkbox(False, label="recompute (do not resume a stored run)", elem_id="eval-fresh")
    run = gr.Button("Evaluate", variant="primary", elem_id="eval-run")
    report = gr.Markdown(elem_id="eval-report")
    table = gr.Dataframe(headers=TABLE_COLUMNS, label="systems (accuracy and macro-F1 with 95% CIs)",
                         interactive=False, elem_id="eval-table")
    confusion = gr.Image(label="confusion matrices (rows gold, columns predicted)", type="pil",
                         interactive=False, elem_id="eval-confusion")
    errors_only = gr.Checkbox(False, label="errors only", elem_id="eval-errors-only")
    predictions = gr.Dataframe(headers=["id", "text", "gold", "pred", "raw", "correct", "system"],
                               label="predictions", interactive=False, wrap=True, elem_id="eval-predictions")
    with gr.Accordion("as data", open=False):
        summary = gr.JSON(label="run ids and figures", elem_id="eval-summary")
    every = gr.State(None)  # all predictions, so "errors only" filters without running again

    task.change(_task_changed, task, strategies, api_name="eval_strategies")

    def evaluate(file, example, task, strategies, methods, models, limit, recipes, labels, text_col,
                 label_col, max_new, fresh, errors_only, progress=gr.Progress()):
        from .runs_common import GradioBar, one_line

        with one_line():
            result = _evaluate(wb, file or example, task, strategies, methods, models, limit, recipes,
                               labels, text_col, label_col, max_new, fresh, GradioBar(progress))
            every = result.predictions
            return (result.to_markdown(), _rounded(result.table), _confusion(result),
                    _filter(every, errors_only), every, _summary(result))

    run.click(evaluate, [data, example, task, strategies, methods, models, limit, recipes, labels, text_col,
                         label_col, max_new, fresh, errors_only],
              [report, table, confusion, predictions, every, summary], api_name="evaluate")
    errors_only.change(_filter, [every, errors_only], predictions, api_name="filter_predictions")


def _strategies(task: str) -> list[str]:
    from ..tasks import load_task

    return list(load_task(task).strategies)


def _default(task: str) -> str:
    from ..tasks import load_task

    return load_task(task).default_strategy


def _task_changed(task):
    import gradio as gr

    from .runs_common import one_line

    with one_line():
        return gr.CheckboxGroup(choices=_strategies(task), value=[_default(task)])


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _evaluate(wb, file, task, strategies, methods, models, limit, recipes, labels, text_col, label_col,
              max_new, fresh, bar):
    from ..errors import ConfigError, DataError
    from ..evals.api import evaluate
    from .runs_common import upload_path

    path = upload_path(file)
    if path is None:
        raise DataError("upload a labelled file or pick an example first")
    names = list(dict.fromkeys(m.strip() for m in (models or []) if m and m.strip()))
    if not names:
        raise ConfigError("choose at least one model")
    recipes = _split(recipes)
    if not recipes and not strategies:
        raise ConfigError("choose at least one strategy (or give recipes)")
    if not recipes and not methods:
        raise ConfigError("choose at least one method (or give recipes)")
    generation = {"max_new_tokens": int(max_new)} if max_new else {}
    with ExitStack() as held:
        # sorted, so two runs that want the same models take their locks in the same order
        loaded = {n: held.enter_context(wb.using(n)) for n in sorted(names)}
        return evaluate(path, task, models=[loaded[n] for n in names], methods=methods or ["score"],
                        strategies=strategies or None, labels=_split(labels) or None,
                        columns={"text": text_col or None, "label": label_col or None},
                        generation=generation, limit=int(limit) if limit else None, db=wb.store,
                        fresh=bool(fresh), progress=bar, recipes=recipes or None)


def _rounded(frame):
    return frame.round(3)


def _filter(every, errors_only: bool):
    """The predictions, or only the wrong ones (``correct`` is False)."""
    if every is None:
        return None
    import pandas as pd

    every = every if isinstance(every, pd.DataFrame) else pd.DataFrame(**_frame_args(every))
    if errors_only and "correct" in every:
        every = every[~every["correct"].astype(str).isin(["True", "true"])]
    return every


def _frame_args(value) -> dict:
    """A DataFrame's arguments from what gradio_client sends for one ({headers, data})."""
    if isinstance(value, dict) and "data" in value:
        return {"data": value["data"], "columns": value.get("headers")}
    return {"data": value}


def _confusion(result):
    """Every system's confusion matrix, drawn by ``EvalResult.plot_confusion`` (the report's PNG)."""
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    result.plot_confusion(buf)
    buf.seek(0)
    return Image.open(buf)


def _summary(result) -> dict:
    """The figures a caller checks: per system, its run id and metrics as computed."""
    return {"run_ids": [r.run_id for r in result.runs],
            "best": result.best,
            "systems": {r.system.name: {"run_id": r.run_id, "model": r.system.model,
                                        "strategy": r.system.strategy, "method": r.system.method,
                                        "n": result.metrics[r.system.name]["n"],
                                        "accuracy": result.metrics[r.system.name]["accuracy"],
                                        "accuracy_ci": list(result.metrics[r.system.name]["accuracy_ci"]),
                                        "macro_f1": result.metrics[r.system.name]["macro_f1"],
                                        "unparsed": result.metrics[r.system.name]["unparsed"]}
                        for r in result.runs},
            "comparisons": result.comparisons.to_dict(orient="records"),
            "notes": result.notes}
