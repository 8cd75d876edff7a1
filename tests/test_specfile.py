"""The one kit for spec files: the YAML 1.2 reader, its line-numbered errors, the template renderer,
and the shared checks -- each shown on real task, suite and judge files written to disk."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pytest

from llmlab.checks import did_you_mean, utc_now, whole_number
from llmlab.errors import ConfigError, SuiteError, TaskError
from llmlab.probes import load_suite
from llmlab.probes.judges import gender_words
from llmlab.specfile import Where, parse, render
from llmlab.specfile import yaml as specyaml
from llmlab.tasks import load_task

TASK = "name: x\nlabels: [a, b]\ninstruction: '{instruction}'\n"
SUITE = ("name: s\nchecks:\n  - name: c\n    measure: distinct\n    prompt_template: '{template}'\n"
         "    items:\n      - {{id: one, prompt: p}}\n")


def write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- the YAML 1.2 reader ---------------------------------------------------------------------------


def test_core_schema_scalars():
    doc = parse("words: [yes, no, on, off, y, n, Yes, NO]\nflags: [true, False]\nnothing: ~\n"
                "ints: [017, 0o17, 0x1f, -3]\nfloats: [1e3, 1.5, .inf, -.inf]\nwhen: 2025-01-01\n"
                "time: 2025-01-01 10:00:00\nsexagesimal: 1:20\n", "x.yaml")
    assert doc["words"] == ["yes", "no", "on", "off", "y", "n", "Yes", "NO"]
    assert doc["flags"] == [True, False] and doc["nothing"] is None
    assert doc["ints"] == [17, 15, 31, -3] and doc["floats"] == [1000.0, 1.5, math.inf, -math.inf]
    assert doc["when"] == "2025-01-01" and doc["time"] == "2025-01-01 10:00:00"
    assert doc["sexagesimal"] == "1:20"
    assert math.isnan(parse("x: .nan", "x.yaml")["x"])


def test_mappings_remember_lines_and_merge_keys_work():
    doc = parse("base: &b\n  a: 1\nother:\n  <<: *b\n  c: 2\n", "x.yaml")
    assert doc["other"] == {"a": 1, "c": 2}
    assert doc.line_of("other") == 3 and doc["other"].line_of("c") == 5


def test_a_duplicate_key_and_broken_yaml_are_one_line_with_the_line(tmp_path):
    with pytest.raises(SuiteError) as exc:
        specyaml.load(write(tmp_path, "a: 1\nb: 2\na: 3\n", "d.yaml"), SuiteError)
    assert str(exc.value) == (f"{tmp_path / 'd.yaml'}, line 3, column 1: not valid YAML: "
                              "duplicate key 'a' (first on line 1)")
    with pytest.raises(TaskError, match=r"^t\.yaml, line 2, column 5: not valid YAML: mapping values"):
        parse("a: b\nc: d: e\n", "t.yaml", TaskError)
    with pytest.raises(TaskError, match="task file not found"):
        specyaml.load(tmp_path / "missing.yaml", TaskError, "task file")


def test_where_names_the_line_of_an_unknown_key_with_the_closest_name():
    doc = parse("name: x\n\nlables: [a, b]\n", "t.yaml")
    with pytest.raises(TaskError) as exc:
        Where("t.yaml", TaskError).keys(doc, {"name", "labels"}, "the task")
    assert str(exc.value) == "t.yaml, line 3: the task: unknown key 'lables' (did you mean 'labels'?)"
    with pytest.raises(TaskError, match="unknown key 'zzz'; known: labels, name$"):
        Where("t.yaml", TaskError).keys(parse("zzz: 1", "t.yaml"), {"name", "labels"}, "the task")


# --- task and suite files: the same reader, the same errors -----------------------------------------


def _both_errors(tmp_path, template: str) -> tuple[str, str, str, str]:
    """A task and a suite with the same template; (task path, suite path, task error, suite error)."""
    task = write(tmp_path, TASK.format(instruction=template), "task.yaml")
    suite = write(tmp_path, SUITE.format(template=template), "suite.yaml")
    with pytest.raises(TaskError) as t:
        load_task(task)
    with pytest.raises(SuiteError) as s:
        load_suite(str(suite))
    return task, suite, str(t.value), str(s.value)


def test_task_and_suite_give_the_same_error_for_a_missing_template_variable(tmp_path):
    task, suite, t, s = _both_errors(tmp_path, "About {{ colour }}")
    same = "template 'About {{ colour }}' failed: 'colour' is undefined"
    assert t == f"{task}, line 3: instruction: {same}"
    assert s == f"{suite}, line 7: check 'c', item 1 (one): {same}"


def test_task_and_suite_give_the_same_error_for_a_broken_template(tmp_path):
    task, suite, t, s = _both_errors(tmp_path, "About {{ colour")
    tail = "template 'About {{ colour' failed: unexpected end of template"
    assert t.startswith(f"{task}, line 3: ") and tail in t
    assert s.startswith(f"{suite}, line 5: ") and tail in s


def test_an_unknown_key_gets_did_you_mean_and_its_line_in_tasks_and_suites(tmp_path):
    task = write(tmp_path, "name: x\nlabels: [a, b]\ninstruction: go\ndescripton: typo\n", "task.yaml")
    with pytest.raises(TaskError) as t:
        load_task(task)
    assert str(t.value) == f"{task}, line 4: the task: unknown key 'descripton' (did you mean 'description'?)"
    suite = write(tmp_path, SUITE.format(template="{{ prompt }}") + "    descripton: typo\n", "suite.yaml")
    with pytest.raises(SuiteError) as s:
        load_suite(str(suite))
    assert str(s.value) == (f"{suite}, line 8: check 'c': unknown key 'descripton' "
                            "(did you mean 'description'?)")


def test_yes_and_no_in_a_judge_entry_stay_words(tmp_path):
    """With YAML 1.1 'default: no' is False and the patterns judge refuses it; 'on' would be True."""
    text = ("name: yn\nchecks:\n  - name: c\n    measure: share\n"
            "    judge: {type: patterns, verdicts: {yes: ['\\byes\\b'], on: ['\\bon\\b']}, default: no}\n"
            "    items: ['Is it on?']\n")
    judge = load_suite(str(write(tmp_path, text, "yn.yaml"))).checks[0].judge
    assert judge.verdicts == ("yes", "on", "no")
    assert judge("Yes, it is.", {}).label == "yes" and judge("Maybe.", {}).label == "no"


def test_the_judges_word_lists_are_read_as_yaml_1_2():
    words = gender_words()
    assert all(isinstance(w, str) for ws in words.values() for w in ws)
    assert {"she", "he"} <= {w.lower() for ws in words.values() for w in ws}


def test_the_renderer_is_sandboxed_and_keeps_what_the_template_says():
    assert render("Q: {{ q }}\n", {"q": "hi"}) == "Q: hi\n"
    with pytest.raises(TaskError, match="failed: "):
        render("{{ ''.__class__.__mro__ }}", {}, TaskError)
    with pytest.raises(SuiteError, match="failed: "):
        render("{{ items.append(1) }}", {"items": []}, SuiteError)  # immutable: no mutating the inputs


# --- the shared checks -----------------------------------------------------------------------------


def test_did_you_mean_whole_number_and_timestamps():
    assert did_you_mean("acuracy", ["accuracy", "share"]) == " (did you mean 'accuracy'?)"
    assert did_you_mean("zzz", ["accuracy"]) == ""
    assert whole_number("--samples", 2) == 2 and whole_number("shots", 0, least=0) == 0
    for bad in (0, -1, True, 1.5, "3"):
        with pytest.raises(ConfigError, match="--samples must be a whole number >= 1"):
            whole_number("--samples", bad)
    stamp = datetime.fromisoformat(utc_now())
    assert stamp.utcoffset().total_seconds() == 0 and stamp.microsecond == 0
