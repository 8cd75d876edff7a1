"""The Probes & bench page: a probe suite or a speed benchmark on a model, with what the figures count.

A probe runs through ``probes.run_suite`` as ``llmlab probe`` does (stored in the Workbench's store as
it goes, so it resumes and is listed on the Runs page), with the Workbench's loaded model held by
``wb.using``. Its figures come with the answers they count: the same two tables the CLI prints
(``figures_table``, whose "records counted" column names the answers' numbers, and ``answers_table``).
A benchmark is ``bench.run_bench``: each repeat in a fresh process, so it never uses the loaded
model; the table is the CLI's, and every measurement behind its medians is listed.

What it gives up: one model and one suite per run (the CLI takes several, and a judge model); the
defaults are cut so that a run with smollm2 takes seconds (two prompts per check, short answers,
one repeat at one prompt length), which is a demonstration, not a measurement to report.
"""

from __future__ import annotations


def build(wb) -> None:
    import gradio as gr

    from ..probes import builtin_suites

    suites = builtin_suites()
    gr.Markdown("### Probe\nAsk a model a suite's prompts and judge the answers: every figure names the "
                "answers it counts (#numbers in the answers table).")
    with gr.Row():
        model = gr.Dropdown(wb.choices(), value=wb.default_model, allow_custom_value=True, label="model",
                            elem_id="probe-model", min_width=200)
        suite = gr.Dropdown(suites, value="hallucination" if "hallucination" in suites else suites[0],
                            label="suite", elem_id="probe-suite", min_width=200)
        limit = gr.Number(2, precision=0, minimum=1, label="prompts per check", elem_id="probe-limit",
                          min_width=120)
        # 0, not blank: the browser turns a blank number into 0, which a minimum of 1 then refuses
        samples = gr.Number(0, precision=0, minimum=0, label="samples per prompt (0: the suite's)",
                            elem_id="probe-samples", min_width=120)
        max_new = gr.Number(32, precision=0, minimum=1, label="max new tokens", elem_id="probe-max-tokens",
                            min_width=120)
    run = gr.Button("Run probe", variant="primary", elem_id="probe-run")
    probe_note = gr.Markdown(elem_id="probe-report")
    figures = gr.Dataframe(headers=["check", "figure", "value", "basis", "records counted"],
                           label="figures", interactive=False, wrap=True, elem_id="probe-figures")
    answers = gr.Dataframe(headers=["#", "check", "item", "prompt (as sent)", "answer", "verdict", "why"],
                           label="answers", interactive=False, wrap=True, elem_id="probe-answers")

    gr.Markdown("### Benchmark\nLoad time, time to first token, prefill and decode tokens/s and peak memory, "
                "each repeat in a fresh process.")
    with gr.Row():
        bench_model = gr.Dropdown(wb.choices(), value=wb.default_model, allow_custom_value=True,
                                  label="model", elem_id="bench-model", min_width=200)
        lengths = gr.Textbox("16", label="prompt lengths (tokens, comma-separated)", elem_id="bench-lengths",
                             min_width=160)
        repeats = gr.Number(1, precision=0, minimum=1, label="repeats", elem_id="bench-repeats",
                            min_width=100)
        new_tokens = gr.Number(8, precision=0, minimum=1, label="new tokens", elem_id="bench-new-tokens",
                               min_width=100)
    bench = gr.Button("Run benchmark", variant="primary", elem_id="bench-run")
    bench_note = gr.Markdown(elem_id="bench-report")
    bench_table = gr.Dataframe(label="medians (min-max over repeats)", interactive=False, wrap=True,
                               elem_id="bench-table")
    measurements = gr.Dataframe(label="every measurement", interactive=False, wrap=True,
                                elem_id="bench-measurements")

    def probe(model, suite, limit, samples, max_new, progress=gr.Progress()):
        from .runs_common import GradioBar, one_line

        with one_line():
            return run_probe(wb, model, suite, limit, samples, max_new, GradioBar(progress))

    def benchmark(model, lengths, repeats, new_tokens, progress=gr.Progress()):
        from .runs_common import GradioBar, one_line

        with one_line():
            return run_benchmark(wb, model, lengths, repeats, new_tokens, GradioBar(progress))

    run.click(probe, [model, suite, limit, samples, max_new], [probe_note, figures, answers],
              api_name="probe")
    bench.click(benchmark, [bench_model, lengths, repeats, new_tokens],
                [bench_note, bench_table, measurements], api_name="bench")


def _whole(value) -> int | None:
    return None if value in (None, "", 0) else int(value)


def run_probe(wb, model: str, suite: str, limit, samples, max_new, bar=None):
    """(a note naming the run, the figures table, the answers table) of one suite on one model."""
    from ..probes import load_suite
    from ..probes.report import answers_table, figures_table
    from ..probes.runner import run_suite
    from .runs_common import frame

    spec = load_suite(suite)  # a bad suite fails before the model loads
    with wb.using(model) as m:
        run = run_suite(m, spec, samples=_whole(samples), limit=_whole(limit), max_new_tokens=_whole(max_new),
                        store=wb.store, bar=bar)
    resumed = f"; {run.resumed} answers resumed from the store" if run.resumed else ""
    note = (f"**{spec.name}** on {run.model}: {len(run.records)} answers, stored as probe run {run.id} "
            f"(the Runs page re-opens it){resumed}.")
    return note, frame(figures_table(run)), frame(answers_table(run))


def run_benchmark(wb, model: str, lengths: str, repeats, new_tokens, bar=None):
    """(a note, the CLI's table of medians, one row per measurement) of one model."""
    from ..bench import parse_lengths, run_bench
    from ..bench_report import bench_table
    from .runs_common import frame

    n_ctx = wb.load_options.get("n_ctx")
    result = run_bench([model], parse_lengths(lengths), _whole(repeats) or 1, _whole(new_tokens) or 8,
                       n_ctx=n_ctx, threads=wb.load_options.get("threads"), store=wb.store, bar=bar)
    note = f"stored as bench run {result.run_id} (the Runs page re-opens it)."
    return note, frame(bench_table(result)), _measurements(result)


def _measurements(result):
    """One row per model x repeat x prompt length: what the medians are taken over."""
    import pandas as pd

    rows = []
    for run in result.runs:
        for m in run.get("measurements", []) or []:
            rows.append({"model": run.get("model"), "repeat": run.get("repeat"),
                         "load_s": run.get("load_s"), **m})
        if run.get("error"):
            rows.append({"model": run.get("model"), "repeat": run.get("repeat"), "error": run["error"]})
    return pd.DataFrame(rows)
