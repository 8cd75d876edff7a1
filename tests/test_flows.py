"""Flows: a YAML chain of model calls, checked before any model loads, run on the bundled SmolLM2 over
a small dataset (stored, resumed after Ctrl-C, each call in the call log) and scored against
reference columns, the scores checked against sacrebleu and scikit-learn called directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from llmlab.errors import ConfigError, DataError, FlowError
from llmlab.flows import evaluate_flow, load_flow, parse_flow, run_flow
from llmlab.flows import run as flow_run
from llmlab.store import Store
from test_evals_resume import Interrupt  # Ctrl-C right after the k-th unit is stored

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "flows"
DATA = EXAMPLES / "reviews.csv"
ROWS = 2  # the machine is small and shared: every row is three model calls
SCHEMA = {"type": "object", "properties": {"product": {"type": "string", "maxLength": 24}},
          "required": ["product"]}

# the structured middle of the chain: extract's JSON value feeds both later templates
FLOW = """\
name: triage-test
max_new_tokens: 16
steps:
  - name: extract
    system: You read product reviews and answer in JSON.
    prompt: "Review: {{ input }}\\nWhich product is the review about?"
    json_schema: product.json
    max_new_tokens: 24
  - name: classify
    prompt: |
      Review of a {{ extract.product }}: {{ input }}
      Is this review {{ labels_text }}? Answer with one word.
    labels: {positive: [good], negative: [bad]}
    max_new_tokens: 4
  - name: summarise
    prompt: "Headline for this {{ classify }} review of a {{ extract.product }}: {{ row.review }}"
    stop: ["\\n"]
"""


def write_flow(folder: Path, text: str = FLOW, name: str = "flow.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "product.json").write_text(json.dumps(SCHEMA))
    path = folder / name
    path.write_text(text)
    return path


def stored(db: Path, read):
    """What ``read(store)`` finds in the store at ``db``."""
    store = Store.open(db)
    try:
        return read(store)
    finally:
        store.close()


def flow_error(tmp_path, text: str) -> str:
    with pytest.raises(FlowError) as info:
        load_flow(write_flow(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


# --- the file, checked before any model ------------------------------------------------------------


def test_a_flow_reads_its_steps_settings_schema_and_labels(tmp_path):
    flow = load_flow(write_flow(tmp_path))
    assert [s.name for s in flow.steps] == ["extract", "classify", "summarise"]
    extract, classify, summarise = flow.steps
    assert extract.schema == SCHEMA and extract.config.max_new_tokens == 24
    assert classify.labels.labels == ("positive", "negative")
    assert classify.labels.normalise("Good") == "positive"
    assert summarise.config.temperature == 0 and summarise.config.stop == ("\n",)  # greedy by default
    assert flow.models == ["smollm2"] and flow.with_model("gemma3-270m").models == ["gemma3-270m"]


def test_the_worked_example_parses_and_fits_its_data():
    flow = load_flow(EXAMPLES / "triage.yaml")
    rows = flow_run.read_rows(flow, DATA)
    assert rows.input_column == "review" and len(rows.ids) >= 5
    assert flow.steps[0].schema["required"] == ["product", "problem"]


def test_a_step_naming_an_unknown_step_is_one_line_with_file_line_and_a_suggestion(tmp_path):
    message = flow_error(tmp_path, FLOW.replace("{{ extract.product }}: {{ input }}", "{{ extrct.product }}"))
    assert "flow.yaml, line 10: step 'classify', prompt: {{ extrct }} is neither the input" in message
    assert "did you mean 'extract'?" in message


def test_a_step_reading_a_later_step_is_refused(tmp_path):
    message = flow_error(tmp_path, FLOW.replace("Review: {{ input }}", "Review: {{ summarise }}"))
    assert "line 6: step 'extract', prompt: {{ summarise }} is a step that runs later" in message


def test_bad_yaml_a_misspelt_key_and_a_bad_setting_name_their_lines(tmp_path):
    assert "flow.yaml, line 3, column 1: not valid YAML" in flow_error(tmp_path, "name: x\nsteps: [\n")
    message = flow_error(tmp_path, FLOW.replace("    prompt: |", "    promt: |"))
    assert "line 10: step 'classify': unknown key 'promt' (did you mean 'prompt'?)" in message
    message = flow_error(tmp_path, FLOW.replace("max_new_tokens: 4", "temperature: -1"))
    assert "line 9: step 'classify': invalid generation setting: temperature must be >= 0" in message
    message = flow_error(tmp_path, FLOW.replace("  - name: classify", "  - name: extract"))
    assert "line 9: step 2: the name 'extract' is taken by the step on line 4" in message


def test_a_missing_template_variable_is_refused_before_any_model(tmp_path):
    # a field the step's schema does not have
    wrong = FLOW.replace("{{ extract.product }}: {{ input }}", "{{ extract.prodcut }}")
    message = flow_error(tmp_path, wrong)
    assert "reads extract.prodcut, but the json_schema of 'extract' has no property 'prodcut' (did you " \
           "mean 'product'?)" in message
    # a column the data does not have: refused when the data is read, before the model is loaded
    flow = load_flow(write_flow(tmp_path, FLOW.replace("row.review", "row.reveiw")))
    with pytest.raises(FlowError, match=r"flow.yaml, line 16: step 'summarise' reads row.reveiw, but .*"
                       r"reviews.csv has no column 'reveiw' \(did you mean 'review'\?\)"):
        run_flow(flow, DATA, models={"smollm2": None})
    with pytest.raises(FlowError, match="reads {{ row }}, a dataset row: run it with --data"):
        run_flow(load_flow(write_flow(tmp_path)), text="A fine kettle.", models={"smollm2": None})
    # {{ labels_text }} outside a labels step, and a template that does not compile
    message = flow_error(tmp_path, FLOW.replace("Review: {{ input }}", "{{ labels_text }}"))
    assert "this step has no `labels`" in message
    message = flow_error(tmp_path, FLOW.replace("Review: {{ input }}", "{{ input "))
    assert "line 6: step 'extract', prompt: template" in message


def test_a_bad_schema_is_refused_at_its_line(tmp_path):
    inline = FLOW.replace("json_schema: product.json",
                          "json_schema: {type: object, properties: {n: {type: integer, minimum: 3}}}")
    message = flow_error(tmp_path, inline)
    assert "line 7: step 'extract': json_schema: the keyword 'minimum'" in message
    message = flow_error(tmp_path, FLOW.replace("product.json", "missing.json"))
    assert "line 7: step 'extract': json_schema" in message and "missing.json: no such file" in message
    message = flow_error(tmp_path, FLOW.replace("json_schema: product.json", "json_schema: [1, 2]"))
    assert "`json_schema` must be a mapping" in message


def test_the_cli_says_what_is_wrong_in_one_line(tmp_path):
    bad = write_flow(tmp_path, FLOW.replace("{{ classify }}", "{{ clasify }}"))
    env = {**os.environ, "LLMLAB_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "llmlab", "flow", "run", str(bad), "--data", str(DATA)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"llmlab: error: {bad}, line 16: step 'summarise', prompt: {{{{ clasify }}}} is neither the input, "
        "a dataset row nor an earlier step (did you mean 'classify'?)"]


# --- running on the bundled model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def triage(smollm2, tmp_path_factory):
    """The flow over the first rows of the example data, run once: the reference for the tests below."""
    root = tmp_path_factory.mktemp("flows")
    flow = load_flow(write_flow(root))
    db = root / "flows.db"
    result = run_flow(flow, DATA, limit=ROWS, models={"smollm2": smollm2}, db=db, out=root / "out")
    return {"flow": flow, "result": result, "db": db, "out": root / "out", "root": root}


def test_each_step_feeds_the_next_and_every_call_is_logged(triage):
    from jsonschema import validate

    result = triage["result"]
    assert result.run_id is not None and len(result.results) == ROWS
    calls = {c["id"]: c for c in stored(triage["db"], lambda s: s.calls(limit=None))}
    for rec, raw in zip(result.records(), result.results, strict=True):
        assert rec["error"] is None, rec
        product = rec["outputs"]["extract"]["product"]
        validate(rec["outputs"]["extract"], SCHEMA)
        assert rec["outputs"]["classify"] in ("positive", "negative", "(unparsed)")
        assert rec["outputs"]["summarise"] and "\n" not in rec["outputs"]["summarise"]
        assert set(rec["calls"]) == {"extract", "classify", "summarise"}
        for step, call_id in rec["calls"].items():
            assert calls[call_id]["response"] == raw["raw"][step]
        # the later prompts were rendered from the earlier outputs
        sent = json.dumps(calls[rec["calls"]["summarise"]]["messages"], ensure_ascii=False)
        assert json.dumps(product, ensure_ascii=False)[1:-1] in sent
        assert rec["outputs"]["classify"] in sent and rec["row"]["review"][:30] in sent
        assert json.dumps(product, ensure_ascii=False)[1:-1] in json.dumps(
            calls[rec["calls"]["classify"]]["messages"], ensure_ascii=False)


def test_outputs_are_written_per_row_and_per_step(triage):
    out, result = triage["out"], triage["result"]
    lines = [json.loads(x) for x in (out / "outputs.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ["r1", "r2"]
    assert [x["outputs"] for x in lines] == [r["outputs"] for r in result.results]
    table = pd.read_csv(out / "outputs.csv", keep_default_na=False)
    assert list(table.columns) == ["id", "review", "product", "label", "gist", "extract", "classify",
                                   "summarise", "error"]
    assert [json.loads(x) for x in table["extract"]] == result.outputs("extract")
    assert list(table["summarise"]) == result.outputs("summarise")


def test_a_stored_flow_run_reopens_without_a_model(triage):
    from llmlab.runs.reopen import show

    text = stored(triage["db"], lambda s: show(s, [triage["result"].run_id], "csv"))
    lines = text.strip().splitlines()
    assert lines[0].strip() == "id,extract,classify,summarise,error"
    assert len(lines) == 1 + ROWS and lines[1].startswith("r1,")


def test_ctrl_c_midway_then_resume_computes_only_the_rest_and_equals_the_whole_run(
        triage, smollm2, tmp_path, monkeypatch):
    db, flow = tmp_path / "interrupted.db", triage["flow"]
    with monkeypatch.context() as patch:
        Interrupt(after=1).install(patch)
        with pytest.raises(KeyboardInterrupt, match="units of flow run 1 are stored; run the same command"):
            run_flow(flow, DATA, limit=ROWS, models={"smollm2": smollm2}, db=db)
    assert list(stored(db, lambda s: s.units(1))) == ["r1"]
    computed = []
    original = flow_run.run_row
    monkeypatch.setattr(flow_run, "run_row", lambda *a: computed.append(a[2]) or original(*a))
    resumed = run_flow(flow, DATA, limit=ROWS, models={"smollm2": smollm2}, db=db, out=tmp_path / "out")
    assert resumed.run_id == 1 and resumed.resumed == 1
    assert computed == triage["result"].rows.inputs()[1:]  # only the rows not stored
    assert [r["outputs"] for r in resumed.results] == [r["outputs"] for r in triage["result"].results]
    assert "resumed from the store: 1 of 2 rows were done" in resumed.notes
    assert (tmp_path / "out" / "outputs.jsonl").read_text().count("\n") == ROWS


def test_one_input_prints_every_step_and_is_not_stored(smollm2, tmp_path):
    base = write_flow(tmp_path).parent
    flow = parse_flow(FLOW.replace("{{ row.review }}", "{{ input }}"), "inline.yaml", base=base)
    result = run_flow(flow, text="The kettle leaks and the lid cracked.", models={"smollm2": smollm2},
                      db=tmp_path / "one.db")
    assert result.run_id is None and set(result.results[0]["outputs"]) == {"extract", "classify", "summarise"}
    assert stored(tmp_path / "one.db", lambda s: (s.runs(), len(s.calls(limit=None)))) == ([], 3)


# --- scoring ---------------------------------------------------------------------------------------


def test_flow_eval_matches_sacrebleu_and_scikit_learn_called_directly(triage, smollm2, tmp_path,
                                                                     monkeypatch):
    import sacrebleu
    from sklearn.metrics import accuracy_score

    monkeypatch.setattr(flow_run, "run_row", lambda *a: pytest.fail("the stored run was not reused"))
    stored_run = {"limit": ROWS, "models": {"smollm2": smollm2}, "db": triage["db"]}
    evaluation = evaluate_flow(triage["flow"], DATA, ["classify=label", "summarise=gist",
                                                      "extract.product=product"], **stored_run)
    got = {(s["step"], s["metric"]): s for s in evaluation.scores}
    assert set(got) == {("classify", "exact"), ("classify", "f1"), ("summarise", "exact"),
                        ("summarise", "chrf"), ("extract.product", "exact"), ("extract.product", "chrf")}
    data = pd.read_csv(DATA).head(ROWS)
    outputs = [json.loads(x) for x in (triage["out"] / "outputs.jsonl").read_text().splitlines()]
    labels = [o["outputs"]["classify"] for o in outputs]
    assert got["classify", "exact"]["score"] == pytest.approx(accuracy_score(list(data["label"]), labels))
    low, high = got["classify", "exact"]["low"], got["classify", "exact"]["high"]
    assert 0 <= low <= got["classify", "exact"]["score"] <= high <= 1
    summaries = [o["outputs"]["summarise"] for o in outputs]
    chrf = sacrebleu.corpus_chrf(summaries, [list(data["gist"])]).score
    assert got["summarise", "chrf"]["score"] == pytest.approx(chrf)
    products = [o["outputs"]["extract"]["product"] for o in outputs]
    assert got["extract.product", "chrf"]["score"] == pytest.approx(
        sacrebleu.corpus_chrf(products, [list(data["product"])]).score)
    bleu = evaluate_flow(triage["flow"], DATA, ["gist"], metrics=["bleu"], out=tmp_path, **stored_run).scores
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert saved["scores"] == bleu and saved["flow"] == triage["flow"].name
    spent = saved["cost"]["models"]
    assert spent and all(m["input_tokens"] > 0 and m["output_tokens"] > 0 for m in spent.values())
    assert bleu[0]["step"] == "summarise"
    assert bleu[0]["score"] == pytest.approx(sacrebleu.corpus_bleu(summaries, [list(data["gist"])]).score)
    table = evaluation.table.to_csv()
    assert "classify,label,exact,2," in table and "summarise,gist,chrf,2," in table


def test_flow_eval_refuses_a_missing_column_an_unknown_step_and_a_wrong_metric(tmp_path):
    flow = load_flow(write_flow(tmp_path))
    nothing = {"models": {"smollm2": None}, "db": tmp_path / "none.db"}
    with pytest.raises(DataError, match=r"reviews.csv has no column 'gits' for --reference \(did you mean "
                       r"'gist'\?\); its columns: id, review, product, label, gist"):
        evaluate_flow(flow, DATA, ["gits"], **nothing)
    with pytest.raises(FlowError, match=r"no step 'clasify' \(did you mean 'classify'\?\)"):
        evaluate_flow(flow, DATA, ["clasify=label"], **nothing)
    with pytest.raises(ConfigError, match="the metric f1 \\(macro-F1\\) is for a step with labels"):
        evaluate_flow(flow, DATA, ["gist"], metrics=["f1"], **nothing)
    with pytest.raises(ConfigError, match="unknown metric 'rouge'"):
        evaluate_flow(flow, DATA, ["gist"], metrics=["rouge"], **nothing)
    with pytest.raises(DataError, match="column 'gist' has values outside the labels of step 'classify' "
                       r"\(positive, negative\)"):
        evaluate_flow(flow, DATA, ["classify=gist"], **nothing)
    with pytest.raises(ConfigError, match="step 'summarise' has no json_schema with properties"):
        evaluate_flow(flow, DATA, ["summarise.x=gist"], **nothing)
    assert not (tmp_path / "none.db").exists()  # every refusal came before the run
