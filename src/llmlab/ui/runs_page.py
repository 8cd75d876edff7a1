"""The Runs page: every past run of any kind in the Workbench's store, and one re-opened.

The list is ``llmlab runs``'s table and a re-opened run is ``llmlab runs show ID --format markdown``:
the same functions (``runs.reopen.runs_table`` and ``runs.reopen.show``), so the page and the CLI
cannot disagree, and re-opening reads the store only (no model loads, nothing is computed again).
Clicking a row puts its id in the box; several ids of one kind re-open together (an evaluation's
systems give its comparison table and McNemar tests).

What it gives up: the list is not live; opening the tab, or the refresh button,
reads the store again. (No ``from __future__ import annotations`` here: gradio reads the row
handler's ``gr.SelectData`` annotation at run time, and ``gr`` is imported inside ``build``.)
"""

KINDS = ["all", "eval", "probe", "bench", "rag", "agent", "flow"]


def build(wb) -> None:
    import gradio as gr

    gr.Markdown("Every run of every kind (evaluations, probes, benchmarks, RAG and agent evaluations), "
                "newest first. Re-opening one rebuilds its report from the store, computing nothing.")
    with gr.Row():
        kind = gr.Dropdown(KINDS, value="all", label="kind", elem_id="runs-kind", min_width=160)
        refresh = gr.Button("Refresh", elem_id="runs-refresh", min_width=120, scale=0)
    table = gr.Dataframe(value=lambda: list_runs(wb, "all"), label="runs (click a row to pick it)",
                         interactive=False, wrap=True, elem_id="runs-table")
    with gr.Row():
        ids = gr.Textbox(label="run id(s), space-separated", placeholder="e.g. 3 or 3 4 5",
                         elem_id="runs-ids", min_width=200)
        open_ = gr.Button("Re-open", variant="primary", elem_id="runs-open", min_width=120, scale=0)
    report = gr.Markdown(elem_id="runs-report")

    def listed(kind):
        from .runs_common import one_line

        with one_line():
            return list_runs(wb, kind)

    def shown(ids):
        from .runs_common import one_line

        with one_line():
            return show_runs(wb, ids)

    def picked(frame, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            return str(frame.iloc[row]["id"])
        except (IndexError, KeyError, AttributeError):
            return gr.skip()

    refresh.click(listed, kind, table, api_name="list_runs")
    kind.change(listed, kind, table, api_name=False)
    table.select(picked, table, ids, api_name=False)
    open_.click(shown, ids, report, api_name="show_run")
    ids.submit(shown, ids, report, api_name=False)
    return listed, [kind], [table]  # what the app runs when the tab is opened: the list, fresh


def list_runs(wb, kind: str | None = "all"):
    """Every stored run (of ``kind``), newest first, as the ``llmlab runs`` table."""
    from ..runs.reopen import runs_table
    from .runs_common import frame

    rows = wb.store.runs(limit=None, kind=None if kind in (None, "", "all") else kind)
    return frame(runs_table(rows))


def show_runs(wb, ids: str) -> str:
    """The markdown report of the runs ``ids`` ("3" or "3 4 5"), rebuilt from the store."""
    from ..errors import ConfigError
    from ..runs.reopen import show

    words = (ids or "").replace(",", " ").split()
    if not words:
        raise ConfigError("give the id of a run (click a row of the table)")
    bad = [w for w in words if not w.lstrip("#").isdigit()]
    if bad:
        raise ConfigError(f"run ids are whole numbers, got {bad[0]!r}")
    return show(wb.store, [int(w.lstrip("#")) for w in words], "markdown")
