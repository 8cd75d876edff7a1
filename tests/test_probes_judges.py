"""Every built-in judge against labelled example answers, and the rules' building blocks."""

from pathlib import Path

import pytest

from llmlab.probes import load_suite, make_judge
from llmlab.probes.judges import JudgeSpecError, NumberJudge, find_phrase, normalize, numbers_in
from llmlab.probes.suite import builtin_suites
from llmlab.specfile import yaml as specyaml

# read as the suites are (YAML 1.2), so an answer such as `no` is the word, not False
EXAMPLES = specyaml.load(Path(__file__).parent / "data" / "judge_examples.yaml")


def _check(key: str):
    suite, name = key.split("/")
    return next(c for c in load_suite(suite).checks if c.name == name)


def _cases():
    for key, spec in EXAMPLES.items():
        for n, ex in enumerate(spec["examples"]):
            yield pytest.param(key, ex.get("item", spec["item"]), ex["answer"], ex["verdict"],
                               id=f"{key}-{n}-{ex['verdict']}")


@pytest.mark.parametrize("key,item_id,answer,expected", list(_cases()))
def test_builtin_judge_gives_the_labelled_verdict(key, item_id, answer, expected):
    check = _check(key)
    item = next(i for i in check.items if i.id == item_id)
    verdict = check.judge(answer, {**item.fields, "prompt": check.user_prompt(item)})
    assert verdict.label == expected, f"{answer!r}: {verdict.reason}"
    assert verdict.reason  # every verdict says why


def test_every_builtin_judge_has_labelled_examples_for_every_verdict():
    """A new built-in check, or a new verdict, cannot ship without labelled examples."""
    for suite in builtin_suites():
        for check in load_suite(suite).checks:
            if check.judge is None:
                continue
            key = f"{suite}/{check.name}"
            assert key in EXAMPLES, f"no labelled examples for {key}"
            labelled = {ex["verdict"] for ex in EXAMPLES[key]["examples"]}
            missing = set(check.judge.verdicts) - labelled  # rare verdicts ('mixed') must be right too
            assert not missing, f"{key}: no labelled example of {missing}"


def test_text_matching_ignores_case_accents_and_punctuation_but_needs_whole_words():
    assert normalize("Benito Juárez!") == "benito juarez"
    assert find_phrase("It was JOHN ADAMS.", "John Adams") >= 0
    assert find_phrase("John Quincy Adams", "John Adams") == -1
    assert find_phrase("Parisian cafés", "Paris") == -1


def test_numbers_in_digits_and_words():
    assert numbers_in("thirty-five apples, 2 pears, 1,000 ants, three r's") == [35, 2, 1000, 3]
    assert numbers_in("someone has a tone") == []


def test_number_judge_skips_numbers_from_the_question_and_prefers_a_stated_answer():
    item = {"prompt": "What is 17 + 26 - 8?", "reference": 35}
    assert NumberJudge(pick="first")("17 + 26 - 8 = 35", item).label == "correct"
    assert NumberJudge(pick="first")("43 - 8 = 35", item).label == "incorrect"  # 43 comes first
    assert NumberJudge(pick="last")("43 - 8 = 35", item).label == "correct"
    v = NumberJudge(pick="last")("The answer is 35, not 40.", item)
    assert v.label == "correct" and "stated" in v.reason
    assert NumberJudge(ignore_prompt_numbers=False)("17", {**item, "reference": 17}).label == "correct"


@pytest.mark.parametrize("spec,message", [
    ({"type": "refrence"}, "did you mean 'reference'"),
    ({"type": "patterns", "verdicts": {"x": ["("]}, "default": "y"}, "bad regular expression"),
    ({"type": "patterns", "default": "y"}, "needs 'verdicts'"),
    ({"type": "number", "pick": "middle"}, "first or last"),
    ({"type": "label", "labels": ["only"]}, "at least two"),
    ({"type": "reference", "colour": "red"}, "takes no options"),
    (42, "a type name or a mapping"),
])
def test_bad_judge_specs_are_refused_with_a_reason(spec, message):
    with pytest.raises(JudgeSpecError, match=message):
        make_judge(spec)


def test_gender_judge_counts_words_and_can_take_other_lists():
    judge = make_judge({"type": "gender", "female_names": ["Kim"], "male_names": ["Lee"]})
    v = judge("Kim met Lee, and she laughed.", {})
    assert v.label == "female" and v.detail["counts"] == {"female": 2, "male": 1, "neutral": 0}
    assert make_judge("gender")("Kim met Lee.", {}).label == "none"  # not in the default lists


def test_staleness_judge_names_the_date_in_its_reason():
    judge = make_judge("staleness")
    v = judge("Rishi Sunak.", {"reference": "Keir Starmer", "stale": ["Rishi Sunak"], "as_of": "2025-01-01"})
    assert v.label == "stale" and "2025-01-01" in v.reason
