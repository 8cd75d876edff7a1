"""The run pages of the web UI (Evaluate, Runs, Probes & bench, RAG), driven as a user would.

Through the API with gradio_client (the named endpoints the pages register) and in Chromium with
Playwright, against the app ``ui_app`` launches on 127.0.0.1 with its own store. Every model run is
tiny (a dozen rows, one or two prompts, short answers) and real: smollm2 answers, MiniLM embeds.
The figures the page shows are checked against what llmlab computes from the store for the same run.
"""

from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("gradio_client")

REVIEWS = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "reviews.csv"


@pytest.fixture(scope="module")
def client(ui_app):
    from gradio_client import Client

    return Client(ui_app.url, verbose=False)


def held_out(path, n=12):
    """``n`` rows of examples/reviews.csv, every label represented (every 8th row)."""
    with REVIEWS.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    picked = rows[::8][:n]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(picked)
    assert len({r["label"] for r in picked}) > 1
    return path


def run_eval(client, path, methods=("score",), limit=0, fresh=False):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), None, "sentiment", ["zero-shot"], list(methods),
                          ["smollm2"], limit, "", "", "", "", None, fresh, False, api_name="/evaluate")


def frame(value):
    """A Dataframe output as gradio_client returns it, as rows of dicts."""
    return [dict(zip(value["headers"], row, strict=True)) for row in value["data"]]


def test_evaluate_report_is_what_the_store_says(client, ui_app, tmp_path):
    from llmlab.evals.runner import reopen

    path = held_out(tmp_path / "held.csv")
    # generate logs each call, so the call log can show that re-opening computes nothing
    report, table, confusion, predictions, summary = run_eval(client, path, ("score", "generate"))
    assert summary["run_ids"] and len(summary["systems"]) == 2
    rows = [ui_app.wb.store.run(i) for i in summary["run_ids"]]
    stored = reopen(ui_app.wb.store, rows)
    for name, got in summary["systems"].items():
        m = stored.metrics[name]
        assert got["n"] == m["n"] == 12
        assert got["accuracy"] == pytest.approx(m["accuracy"])
        assert got["macro_f1"] == pytest.approx(m["macro_f1"])
        assert got["accuracy_ci"] == pytest.approx(list(m["accuracy_ci"]))
    # the table the page shows holds the same accuracies (rounded for display)
    shown = {r["system"]: r for r in frame(table)}
    for name, got in summary["systems"].items():
        assert float(shown[name]["accuracy"]) == pytest.approx(got["accuracy"], abs=5e-4)
        assert float(shown[name]["accuracy_low"]) <= got["accuracy"] <= float(shown[name]["accuracy_high"])
    # two systems: the exact McNemar test, in the data and in the report
    assert len(summary["comparisons"]) == 1 and 0 <= summary["comparisons"][0]["p_value"] <= 1
    assert "McNemar" in report and "accuracy [95% CI]" in report
    # one prediction per row per system, the wrong ones counted as the accuracy says
    preds = frame(predictions)
    assert len(preds) == 24
    for name, got in summary["systems"].items():
        mine = [p for p in preds if p["system"] == name]
        right = sum(str(p["correct"]).lower() == "true" for p in mine)
        assert right / len(mine) == pytest.approx(got["accuracy"])
    assert confusion and __import__("pathlib").Path(confusion).stat().st_size > 1000

    # "errors only" keeps exactly the wrong predictions
    wrong = frame(client.predict(predictions, True, api_name="/filter_predictions"))
    assert len(wrong) == sum(str(p["correct"]).lower() != "true" for p in preds)
    assert all(str(p["correct"]).lower() != "true" for p in wrong)

    # the Runs page lists the runs and re-opens them from the store, computing nothing
    listed = frame(client.predict("eval", api_name="/list_runs"))
    assert {str(i) for i in summary["run_ids"]} <= {str(r["id"]) for r in listed}
    calls, runs = len(ui_app.wb.store.calls(limit=None)), len(ui_app.wb.store.runs(limit=None))
    assert calls >= 12  # the generate system's calls
    units = [len(ui_app.wb.store.units(i)) for i in summary["run_ids"]]
    shown = client.predict(" ".join(map(str, summary["run_ids"])), api_name="/show_run")
    assert "re-opened from the store" in shown and "McNemar" in shown
    for got in summary["systems"].values():
        assert f"{got['accuracy']:.3f} [" in shown
    assert len(ui_app.wb.store.calls(limit=None)) == calls
    assert len(ui_app.wb.store.runs(limit=None)) == runs
    assert [len(ui_app.wb.store.units(i)) for i in summary["run_ids"]] == units


def test_bad_input_is_one_line_error(client, tmp_path):
    from gradio_client.exceptions import AppError

    no_label = tmp_path / "no_label.csv"
    no_label.write_text("text,stars\ngreat phone,5\nawful,1\n", encoding="utf-8")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("text,label\ngreat phone,positive\nmeh,lukewarm\n", encoding="utf-8")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine", "label": "positive"}\n{"text": "oops", \n', encoding="utf-8")
    for path, words in ((no_label, "label"), (unknown, "lukewarm"), (broken, "line 2")):
        with pytest.raises(AppError) as exc:
            run_eval(client, path)
        message = str(exc.value)
        assert words in message and "\n" not in message.strip(), message
        assert "Traceback" not in message
    with pytest.raises(AppError, match="whole numbers"):
        client.predict("three", api_name="/show_run")
    with pytest.raises(AppError, match="no run 999999"):
        client.predict("999999", api_name="/show_run")


def test_rag_collection_from_upload_answers_with_sources(client, ui_app, tmp_path):
    from gradio_client import handle_file

    doc = tmp_path / "lighthouse.txt"
    doc.write_text("The Vardø lighthouse keeper, Ingrid Solberg, lit the lamp every evening at six. "
                   "The lighthouse stands on the island of Reinøya and was built in 1896 from grey granite. "
                   "\n\nThe town bakery in Vardø sells cardamom buns on Saturdays and rye bread on Mondays. "
                   "Its oven was brought from Bergen by boat.\n", encoding="utf-8")
    note, _ = client.predict([handle_file(str(doc))], "lighthouse", api_name="/rag_ingest")
    assert "1 added" in note and "0 failed" in note
    answer, sources = client.predict("When was the lighthouse built?", "lighthouse", "smollm2", "hybrid",
                                     2, 48, api_name="/rag_ask")
    rows = frame(sources)
    assert answer.strip() and rows
    assert all(r["file"].endswith("lighthouse.txt") for r in rows)
    assert all(isinstance(r["score"], (int, float)) for r in rows)
    assert "1896" in " ".join(r["text"] for r in rows)

    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question": "What is the lighthouse built from?",
                                     "evidence": "grey granite"}) + "\n", encoding="utf-8")
    report = client.predict(handle_file(str(questions)), "lighthouse", ["dense", "bm25"],
                            api_name="/rag_eval")
    assert "hit@" in report and "| dense |" in report and "| bm25 |" in report
    run_id = int(report.rsplit("rag run ", 1)[1].split()[0])
    assert ui_app.wb.store.run(run_id)["kind"] == "rag"
    assert "| bm25 |" in client.predict(str(run_id), api_name="/show_run")
    with pytest.raises(Exception, match="collection"):
        client.predict("anything?", "no-such-collection", "smollm2", "hybrid", 2, 16, api_name="/rag_ask")


def test_probe_shows_figures_with_the_answers_they_count(client, ui_app):
    note, figures, answers = client.predict("smollm2", "hallucination", 1, 1, 16, api_name="/probe")
    run_id = int(note.split("probe run ")[1].split()[0])
    assert ui_app.wb.store.run(run_id)["kind"] == "probe"
    figs, recs = frame(figures), frame(answers)
    assert figs and recs
    numbers = {r["#"] for r in recs}
    cited = {c.strip("#") for f in figs for c in f["records counted"].split() if c.startswith("#")}
    assert cited and cited <= numbers
    assert all(r["answer"] or r["verdict"] == "error" for r in recs)


def test_bench_lists_every_measurement(client, ui_app):
    note, table, measurements = client.predict("smollm2", "16", 1, 4, api_name="/bench")
    run_id = int(note.split("bench run ")[1].split()[0])
    assert ui_app.wb.store.run(run_id)["kind"] == "bench"
    rows = frame(measurements)
    assert len(rows) == 1 and int(float(rows[0]["length"])) == 16
    assert float(rows[0]["decode_tps"]) > 0
    assert frame(table)


def test_evaluate_in_the_browser(page, tmp_path):
    path = held_out(tmp_path / "browser.csv", n=6)
    page.get_by_role("tab", name="Evaluate").click()
    # the file goes in once the tab has drawn its file box: a file given to the input while the tab
    # was still mounting was lost once (CI, a busy machine), and its name never showed
    page.locator("#eval-file").wait_for(state="visible", timeout=30_000)
    page.locator("#eval-run").wait_for(state="visible", timeout=30_000)
    page.locator("#eval-file input[type=file]").set_input_files(str(path))
    page.locator("#eval-file").get_by_text("browser.csv").first.wait_for(timeout=60_000)
    page.locator("#eval-run").click()
    report = page.locator("#eval-report")
    report.get_by_text("accuracy [95% CI]").wait_for(timeout=60_000)
    assert "6 items" in report.inner_text()
    from playwright.sync_api import expect

    expect(page.locator("#eval-predictions")).to_contain_text("positive", timeout=10_000)
    page.shot("evaluate")
    for tab, ready in (("Runs", "#runs-table"), ("Probes & bench", "#probe-run"), ("RAG", "#rag-ask")):
        page.get_by_role("tab", name=tab).click()
        page.locator(ready).wait_for(state="visible", timeout=10_000)
        page.shot(tab.split()[0].lower())
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-refresh").click()
    expect(page.locator("#runs-table")).to_contain_text("sentiment", timeout=10_000)
    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#eval-run").wait_for(state="visible")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 20, f"the Evaluate page is {width} px wide at a phone's 390 px"
    page.shot("evaluate-phone")
