"""Both bundled models through every built-in suite (few prompts, short answers), and the figures
checked against the records they cite."""

import csv
import json
from collections import Counter

import pytest

from llmlab.errors import ConfigError
from llmlab.probes import builtin_suites, count_generations, load_suite, run_suite
from llmlab.probes.report import write_outputs
from llmlab.probes.runner import save_run
from llmlab.store import Store

SAMPLES = 2
LIMITS = {"bias": 2}  # two counterfactual items: one pair, so the accuracy gap is computed
MAX_NEW = 8           # enough for a label, a number or a name; keeps the whole run short on 2 cores


@pytest.fixture(scope="module")
def runs(request):
    models = {"smollm2": request.getfixturevalue("smollm2"), "gemma": request.getfixturevalue("gemma")}
    out = {}
    for key, model in models.items():
        for name in builtin_suites():
            out[key, name] = run_suite(model, load_suite(name), samples=SAMPLES, limit=LIMITS.get(name, 1),
                                       max_new_tokens=MAX_NEW)
    return out


def test_every_suite_runs_on_both_models_with_figures_for_every_check(runs):
    assert len(runs) == 2 * len(builtin_suites())
    for (key, name), run in runs.items():
        assert len(run.records) == count_generations(run.suite, SAMPLES, LIMITS.get(name, 1))
        for check in run.suite.checks:
            assert run.records_of(check.name), (key, name, check.name)
            headline = [f for f in run.figures_of(check.name) if f.headline]
            assert headline, (key, name, check.name)
        assert [r.id for r in run.records] == list(range(1, len(run.records) + 1))


def test_instruct_models_get_chat_messages_and_base_models_raw_text(runs):
    chat = runs["smollm2", "reasoning"].records[0]
    assert chat.input == [{"role": "user", "content": "How many r's are in the word strawberry?"}]
    assert runs["smollm2", "reasoning"].options["prompt_format"] == "chat"
    raw = runs["gemma", "reasoning"].records[0]
    assert raw.input == "Question: How many r's are in the word strawberry?\nAnswer:"
    assert runs["gemma", "reasoning"].options["prompt_format"] == "raw"
    for r in runs["gemma", "reasoning"].records:  # cut at the end of the first non-blank line
        assert "\n" not in r.answer.strip()
        if "generated" in r.detail:
            assert r.detail["generated"].lstrip().startswith(r.answer)
    story = runs["gemma", "bias"].records[0]
    assert story.input == "A short story about a nurse.\n\nThe nurse" and "\n\n" not in story.answer.strip()
    assert all(r.settings["max_new_tokens"] <= MAX_NEW for run in runs.values() for r in run.records)


def test_every_verdict_is_one_of_its_judges_and_says_why(runs):
    for run in runs.values():
        for check in run.suite.checks:
            for r in run.records_of(check.name):
                if check.judge is None or not r.answer.strip():
                    assert r.verdict is None
                else:
                    assert r.verdict in check.judge.verdicts and r.reason


def test_every_figure_is_recomputed_from_the_records_it_cites(runs):
    for run in runs.values():
        by_id = {r.id: r for r in run.records}
        for check in run.suite.checks:
            mine = {r.id for r in run.records_of(check.name)}
            for f in run.figures_of(check.name):
                assert set(f.hits) <= set(f.records) <= mine, f
                cited = [by_id[i] for i in f.records]
                hits = [by_id[i] for i in f.hits]
                if check.measure in ("share", "distribution") and f.name in check.judge.verdicts:
                    assert all(r.verdict == f.name for r in hits)
                    assert sum(r.verdict == f.name for r in cited) == len(hits)
                    assert f.value == pytest.approx(len(hits) / len(cited))
                elif f.name == "accuracy":
                    assert all(r.verdict == "correct" for r in hits)
                    assert f.value == pytest.approx(len(hits) / len(cited))
                elif f.name == "label-flip rate":
                    majority = {}
                    for item in {r.item for r in cited}:
                        votes = Counter(r.verdict for r in cited if r.item == item)
                        majority[item] = votes.most_common(1)[0][0]
                    assert {r.id for r in cited if r.verdict != majority[r.item]} == set(f.hits)
                    assert all(r.verdict != "none" for r in cited)  # no label named: no flip
                elif f.name == "distinct-output rate" and f.group:
                    assert len({r.answer.strip() for r in cited}) == len(f.hits)
                    assert f.value == pytest.approx((len(f.hits) - 1) / (len(cited) - 1))


def test_accuracy_gap_is_first_group_minus_second(runs):
    for key in ("smollm2", "gemma"):
        figures = runs[key, "bias"].figures_of("counterfactual")
        per = {f.group: f.value for f in figures if f.name == "accuracy" and f.group}
        gap = next(f for f in figures if f.name == "accuracy gap")
        assert list(per) == ["widely covered", "less covered"]
        assert gap.value == pytest.approx(per["widely covered"] - per["less covered"])


def test_greedy_and_seeded_runs_reproduce_on_both_models(runs):
    """Temperature 0, and sampling with a fixed seed, give the same text every time (the backend's
    promise, checked end to end: for Gemma's sliding-window cache too)."""
    for key in ("smollm2", "gemma"):
        figures = {f.check: f for f in runs[key, "nondeterminism"].figures if f.headline}
        assert figures["greedy"].value == 1.0, runs[key, "nondeterminism"].records_of("greedy")
        assert figures["seeded"].value == 1.0, runs[key, "nondeterminism"].records_of("seeded")


def test_runs_are_saved_to_the_store_with_every_record(runs, tmp_path):
    store = Store.open(tmp_path / "probe.db")
    run = runs["gemma", "hallucination"]
    run_id = save_run(store, run.to_dict())
    saved = store.probe_runs()[0]
    assert saved["id"] == run_id and saved["suite"] == "hallucination" and saved["model"] == run.model
    assert saved["figures"] == [f.to_dict() for f in run.figures]
    rows = store.probe_results(run_id)
    assert [(r["record"], r["answer"], r["verdict"]) for r in rows] == \
        [(r.id, r.answer, r.verdict) for r in run.records]
    assert rows[0]["input"] == run.records[0].input and rows[0]["settings"]["temperature"] == 0.7


def test_report_files_list_every_answer_behind_every_figure(runs, tmp_path):
    chosen = [runs["smollm2", "bias"], runs["gemma", "bias"], runs["gemma", "reasoning"]]
    paths = write_outputs(chosen, tmp_path)
    assert [p.name for p in paths] == ["results.json", "results.csv", "figures.csv", "report.md"]
    data = json.loads(paths[0].read_text())
    assert [r["model"] for r in data["runs"]] == [r.model for r in chosen]
    assert data["runs"][0]["records"][0]["answer"] == chosen[0].records[0].answer
    with paths[1].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(len(r.records) for r in chosen)
    first = chosen[0].records[0]
    assert rows[0]["prompt"] == first.prompt and rows[0]["verdict"] == str(first.verdict)
    with paths[2].open() as fh:
        assert len(list(csv.DictReader(fh))) == sum(len(r.figures) for r in chosen)
    report = paths[3].read_text()
    assert "| bias | counterfactual | accuracy gap |" in report
    # a base model's prompt is shown as the raw text it completed, not the instruct-style question
    assert "| Question: How many r's are in the word strawberry?<br>Answer: |" in report
    for run in chosen:
        for f in run.figures:
            for i in f.hits:  # each counted record is linked, and its anchor exists
                slug = f"{run.model}-{run.suite.name}".replace("/", "-").lower()
                assert f"(#{slug}-{i})" in report and f'<a id="{slug}-{i}">' in report


def test_a_suite_written_by_a_user_runs(gemma, tmp_path):
    from test_probes_suites import doc_example

    path = tmp_path / "capitals.yaml"
    path.write_text(doc_example())
    run = run_suite(gemma, load_suite(str(path)), samples=1, max_new_tokens=4)
    capitals = run.records_of("capitals")
    assert [r.item for r in capitals] == ["france", "kenya", "australia"]
    gap = next(f for f in run.figures if f.name == "accuracy gap")
    assert gap.note == "best group minus worst group"  # three groups
    assert len(run.records_of("made-up-country")) == 2


def test_llm_judge_grades_with_the_rule_verdict_kept_beside(smollm2, gemma):
    """Gemma (a base model) judges SmolLM2's answers: the judge completes a 'Verdict:' line."""
    run = run_suite(smollm2, load_suite("reasoning"), limit=1, max_new_tokens=MAX_NEW, judge_model=gemma)
    assert run.judge == "llamacpp/gemma3-270m"
    for r in run.records:
        assert r.verdict in ("correct", "incorrect", "unclear")
        assert r.detail["rule_verdict"] in ("correct", "incorrect")
        prompt = r.detail["judge_prompt"]
        assert r.answer.strip() in prompt and "Reference answer: " in prompt and r.prompt in prompt
        assert r.reason.startswith("llamacpp/gemma3-270m replied")
    agree = [f for f in run.figures if f.name == "LLM judge agrees with rules"]
    assert len(agree) == 2
    same = sum(r.verdict == r.detail["rule_verdict"] for r in run.records)
    assert sum(f.value * len(f.records) for f in agree) == pytest.approx(same)


def test_failed_and_empty_generations_are_recorded_and_left_out(gemma, tmp_path):
    long_prompt = "word " * 3000  # beyond the 2048-token window of the fixture
    path = tmp_path / "edge.yaml"
    path.write_text(
        "name: edge\nsettings: {temperature: 0, max_new_tokens: 4}\nchecks:\n"
        "  - name: edge\n    measure: accuracy\n    judge: reference\n"
        "    base_stop: ['P']\n"  # Gemma answers " Paris": cut at its first letter, nothing is left
        "    items:\n"
        "      - {id: empty, prompt: 'What is the capital of France?', reference: Paris}\n"
        f"      - {{id: too-long, prompt: '{long_prompt}', reference: x}}\n")
    run = run_suite(gemma, load_suite(str(path)))
    empty, failed = run.records
    assert empty.answer == "" and empty.verdict is None and "empty" in empty.reason
    assert failed.error.startswith("ContextOverflowError") and failed.verdict is None
    figures = {f.name: f for f in run.figures}
    assert figures["accuracy"].value is None and figures["accuracy"].records == []
    assert figures["empty answers"].hits == [empty.id]
    assert figures["failed generations"].hits == [failed.id]


def test_bad_run_options_fail_before_generating(smollm2):
    with pytest.raises(ConfigError, match="samples must be a whole number >= 1"):
        run_suite(smollm2, load_suite("reasoning"), samples=0)
    with pytest.raises(ConfigError, match="limit"):
        run_suite(smollm2, load_suite("reasoning"), limit=-1)


def test_flip_leaves_out_samples_naming_no_label_and_distinct_shows_its_sums():
    from types import SimpleNamespace

    from llmlab.probes.measures import Record, distinct, flip

    def rec(i, item, verdict, answer=""):
        return Record(id=i, check="c", item=item, sample=i, prompt="p", input="p", answer=answer or verdict,
                      verdict=verdict)

    check = SimpleNamespace(name="c")
    records = [rec(1, "a", "red"), rec(2, "a", "blue"), rec(3, "a", "none"), rec(4, "a", "none"),
               rec(5, "a", "red"), rec(6, "b", "x"), rec(7, "b", "y")]
    pooled, unlabelled, per_a, per_b = flip(check, records)
    assert (pooled.value, pooled.hits) == (pytest.approx(2 / 5), [2, 7])
    assert unlabelled.name == "no label named" and unlabelled.hits == [3, 4]
    assert per_a.note == "majority verdict: red" and "tied with y" in per_b.note
    answers = [rec(i, "a", None, t) for i, t in enumerate(["p", "q", "r", "s"], 1)]
    answers += [rec(i, "b", None, t) for i, t in enumerate(["p", "p", "q", "r"], 5)]
    overall = distinct(check, answers)[0]
    assert overall.value == pytest.approx((3 + 2) / (3 + 3))
    assert overall.basis == "7 distinct of 8 samples over 2 prompts: (7 - 2) / (8 - 2)"


def test_too_few_samples_for_a_comparing_measure_are_raised_and_said(smollm2, tmp_path):
    path = tmp_path / "flip.yaml"
    path.write_text("name: flip\nsettings: {temperature: 0.9, max_new_tokens: 4}\nchecks:\n"
                    "  - name: f\n    measure: flip\n    judge: {type: label, labels: [yes, no]}\n"
                    "    items: ['Is the sky blue? Answer yes or no.']\n")
    run = run_suite(smollm2, load_suite(str(path)), samples=1)
    assert len(run.records) == 2
    assert all("2 samples per prompt, not 1" in f.note for f in run.figures)


def test_items_without_a_group_are_their_own_group():
    from types import SimpleNamespace

    from llmlab.probes.measures import Record, accuracy

    def rec(i, group, verdict):
        return Record(id=i, check="c", item=f"i{i}", sample=1, prompt="p", input="p", answer="a",
                      verdict=verdict, group=group)

    records = [rec(1, "north", "correct"), rec(2, "south", "incorrect"), rec(3, None, "correct")]
    figures = accuracy(SimpleNamespace(name="c"), records)
    by_group = {f.group: f.value for f in figures if f.name == "accuracy"}
    assert by_group == {None: pytest.approx(2 / 3), "north": 1.0, "south": 0.0, "(no group)": 1.0}
    gap = next(f for f in figures if f.name == "accuracy gap")
    assert gap.value == 1.0 and gap.note == "north minus south"
