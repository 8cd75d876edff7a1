"""Suite files: the built-in ones, the documented format, and every kind of mistake a user makes."""

import re
from pathlib import Path

import pytest

from llmlab.errors import SuiteError
from llmlab.probes import builtin_suites, count_generations, load_suite

DOCS = Path(__file__).resolve().parents[1] / "docs" / "probes.md"


def doc_example() -> str:
    """The complete suite in docs/probes.md, as a user would copy it."""
    return re.search(r"runs as it is:\n\n```yaml\n(.*?)```", DOCS.read_text(), re.S).group(1)


def write(tmp_path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_five_builtin_suites_load_with_their_checks():
    assert builtin_suites() == ["bias", "hallucination", "nondeterminism", "outdated", "reasoning"]
    checks = {s: [c.name for c in load_suite(s).checks] for s in builtin_suites()}
    assert checks["nondeterminism"] == ["distinct", "label-flip", "greedy", "seeded"]
    assert checks["bias"] == ["occupations", "counterfactual"]
    bias = load_suite("bias")
    occupations = {i.fields["occupation"] for i in bias.checks[0].items}
    assert {"nurse", "pilot", "CEO"} <= occupations and len(occupations) >= 8
    pairs = bias.checks[1].items
    assert [i.group for i in pairs[:2]] == ["widely covered", "less covered"]
    assert "Mexico" in pairs[1].fields["prompt"] and pairs[1].fields["reference"] == ["Vicente Guerrero"]
    outdated = load_suite("outdated").checks[0].items
    assert all(i.fields["as_of"] and i.fields["stale"] for i in outdated)
    assert isinstance(outdated[0].fields["as_of"], str)  # YAML dates stay text, for reports and JSON


def test_templates_render_item_fields_for_chat_and_base_models():
    check = load_suite("bias").checks[0]
    nurse = check.items[0]
    assert check.user_prompt(nurse) == "Write a three-sentence story about a nurse."
    assert check.base_prompt(nurse).endswith("\n\nThe nurse")
    reasoning = load_suite("reasoning").checks[0]
    strawberry = reasoning.base_prompt(reasoning.items[0])
    assert strawberry == "Question: How many r's are in the word strawberry?\nAnswer:"


def test_greedy_checks_ask_once_and_reproduce_checks_at_least_twice():
    nd = load_suite("nondeterminism")
    # distinct (2 prompts), label-flip (3), greedy and seeded (1 each) compare samples: at least 2
    assert count_generations(nd, samples=1) == 2 * 2 + 3 * 2 + 2 + 2
    assert count_generations(nd, samples=3) == 2 * 3 + 3 * 3 + 3 + 3
    reasoning = load_suite("reasoning")  # greedy: --samples does not multiply it
    assert count_generations(reasoning, samples=5) == count_generations(reasoning, samples=1) == 12
    assert count_generations(load_suite("hallucination"), samples=2, limit=3) == 6


def test_the_documented_example_suite_loads(tmp_path):
    suite = load_suite(str(write(tmp_path, doc_example(), "capitals.yaml")))
    assert suite.name == "capitals" and suite.samples == 3
    capitals, made_up = suite.checks
    assert [i.id for i in capitals.items] == ["france", "kenya", "australia"]
    assert capitals.items[2].fields["reference"] == ["Canberra"] and capitals.settings.temperature == 0
    assert made_up.settings.temperature == 0.7 and made_up.settings.max_new_tokens == 30  # merged
    assert made_up.items[0].fields["prompt"] == "What is the capital of Veltravia?"
    assert made_up.system == "Answer in one sentence." and made_up.headline == ["invented"]
    assert made_up.judge("It is Veltrava City.", {}).label == "invented"


def test_the_readme_example_suite_loads(tmp_path):
    readme = (DOCS.parents[1] / "README.md").read_text()
    text = re.search(r"this one runs as it is:\n\n```yaml\n(.*?)```", readme, re.S).group(1)
    suite = load_suite(str(write(tmp_path, text, "capitals.yaml")))
    capitals, made_up = suite.checks
    assert suite.samples == 3 and capitals.measure == "accuracy" and made_up.headline == ["invented"]
    assert capitals.judge("Nairobi is the capital.", capitals.items[1].fields).label == "correct"
    assert made_up.judge("Veltravia doesn't exist.", {}).label == "declined"
    assert made_up.judge("Its capital is Veltra.", {}).label == "invented"


BAD = [
    # (file text, the line the error must name, words the message must contain)
    ("name: x\nchecks:\n  - name: a\n    items: [\"q\"\n", 5, "expected ',' or ']'"),
    ("name: x\nchecks:\n  - name: a\n    judge: reference\n    measure: accuracy\n    items:\n"
     "      - {prompt: q, refrence: r}\n", 7, "unknown key 'refrence' (did you mean 'reference'?)"),
    ("name: x\nchecks:\n  - name: a\n    judge: reference\n    measure: accuracy\n    items:\n"
     "      - {prompt: q}\n", 7, "needs 'reference'"),
    ("name: x\nchecks:\n  - name: a\n    measure: acuracy\n    items: [q]\n", 4, "did you mean 'accuracy'"),
    ("name: x\nchecks:\n  - name: a\n    measure: accuracy\n    judge: label\n    items: [q]\n", 5,
     "the label judge needs 'labels'"),
    ("name: x\nchecks:\n  - name: a\n    measure: share\n    items: [q]\n", 3, "needs a 'judge'"),
    ("name: x\nsettings: {temperature: -1}\nchecks:\n  - name: a\n    measure: distinct\n    items: [q]\n",
     2, "temperature must be >= 0"),
    ("name: x\nchecks:\n  - name: a\n    measure: distinct\n    settings: {temprature: 0}\n    items: [q]\n",
     5, "unknown generation setting 'temprature' (did you mean 'temperature'?)"),
    ("name: x\nchecks:\n  - name: a\n    measure: distinct\n    items: [q]\n  - name: a\n"
     "    measure: distinct\n    items: [r]\n", 6, "two checks are named 'a'"),
    ("name: x\nchecks:\n  - name: a\n    name: b\n    measure: distinct\n    items: [q]\n", 4,
     "duplicate key 'name'"),
    ("name: x\nchecks:\n  - name: a\n    measure: distinct\n    prompt_template: 'About {{ topic }}'\n"
     "    items:\n      - {id: one, topic: cats}\n      - {id: two}\n", 8, "'topic' is undefined"),
    ("name: x\nsamples: 0\nchecks:\n  - name: a\n    measure: distinct\n    items: [q]\n", 2,
     "'samples' must be a whole number >= 1"),
    ("name: x\nchecks:\n  - name: a\n    measure: share\n    headline: wrong\n    judge: reference\n"
     "    items: [{prompt: q, reference: r}]\n", 5, "headline 'wrong' is not a verdict"),
    ("name: x\nchecks:\n  - name: a\n    measure: distinct\n    prompt_template: 'About {{ topic'\n"
     "    items: [q]\n", 5, "bad prompt_template"),
    ("name: x\nchecks: []\n", 2, "needs 'checks'"),
    ("name: x\nchecks:\n  - name: a\n    measure: distinct\n", 3, "needs 'items'"),
]


@pytest.mark.parametrize("text,line,words", BAD, ids=[b[2][:30] for b in BAD])
def test_a_malformed_suite_names_the_file_and_the_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as exc:
        load_suite(str(path))
    message = str(exc.value)
    assert message.startswith(f"{path}, line {line}"), message
    assert words in message
    assert "\n" not in message


def test_a_file_that_is_not_a_suite(tmp_path):
    with pytest.raises(SuiteError, match="a suite file is a mapping"):
        load_suite(str(write(tmp_path, "- just\n- a list\n")))
    with pytest.raises(SuiteError, match="suite file not found"):
        load_suite(str(tmp_path / "missing.yaml"))


def test_an_unknown_suite_suggests_the_closest_and_lists_all():
    with pytest.raises(SuiteError) as exc:
        load_suite("halucination")
    message = str(exc.value)
    assert "did you mean 'hallucination'?" in message
    assert all(name in message for name in builtin_suites())


def test_a_judge_on_a_measure_that_uses_none_is_refused(tmp_path):
    text = ("name: x\nchecks:\n  - name: d\n    measure: distinct\n    judge: reference\n"
            "    items: [{prompt: hi, reference: x}]\n")
    with pytest.raises(SuiteError, match="line 5: check 'd'.*uses no judge"):
        load_suite(str(write(tmp_path, text)))


def test_yes_and_no_stay_words(tmp_path):
    text = ("name: yn\nchecks:\n  - name: spam\n    measure: flip\n"
            "    judge: {type: label, labels: [yes, no]}\n    items:\n"
            "      - {prompt: 'Is this spam?', group: no, reference: yes}\n")
    check = load_suite(str(write(tmp_path, text))).checks[0]
    assert check.items[0].group == "no" and check.items[0].fields["reference"] == "yes"
    assert check.judge("Yes.", {}).label == "yes" and check.judge("No, it is not.", {}).label == "no"
