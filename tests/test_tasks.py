"""Tasks as YAML: built-ins, strategies, label normalisation and parsing, user task files, bad files."""

from __future__ import annotations

import textwrap

import pytest

from llmlab.errors import TaskError
from llmlab.tasks import UNPARSED, list_tasks, load_task, messages, parse_label
from llmlab.tasks.prompts import plain_text

STRATEGIES = ["zero-shot", "few-shot", "role", "chain-of-thought", "structured"]


def test_builtin_tasks_and_their_labels():
    tasks = {t.name: t for t in list_tasks()}
    assert set(tasks) >= {"sentiment", "topic", "classify"}
    assert tasks["sentiment"].labels == ("positive", "negative", "neutral")
    assert tasks["topic"].labels == ("sports", "finance", "politics", "entertainment", "science")
    assert tasks["classify"].labels == ()
    for t in tasks.values():
        assert list(t.strategies)[:5] == STRATEGIES


def test_classify_takes_labels_from_the_caller():
    task = load_task("classify", labels=["spam", "ham", "Spam "])
    assert task.labels == ("spam", "ham")
    user = messages(task, task.strategy("zero-shot"), "WIN A PRIZE")[-1].content
    assert "spam or ham" in user and "WIN A PRIZE" in user
    with pytest.raises(TaskError, match="at least two labels"):
        load_task("classify", labels=["only"])


def test_normalise_case_space_and_synonyms():
    task = load_task("sentiment")
    assert task.normalise("  POSITIVE ") == "positive"
    assert task.normalise("Mixed") == "neutral"
    assert task.normalise("neg.") == "negative"
    assert task.normalise("great") is None


def test_each_strategy_builds_its_prompt():
    task = load_task("sentiment")
    text = "An unforgettable evening at the theatre."
    built = {s: messages(task, task.strategy(s), text) for s in STRATEGIES}
    for msgs in built.values():
        assert msgs[-1].role == "user" and text in msgs[-1].content
    assert [m.role for m in built["zero-shot"]] == ["user"]
    assert "Just return the label, nothing else!" in built["zero-shot"][0].content
    few = built["few-shot"]
    assert [m.role for m in few] == ["user", "assistant"] * 6 + ["user"]
    assert [m.content for m in few[1::2]] == [e["label"] for e in task.examples]
    assert built["role"][0].role == "system" and "critic" in built["role"][0].content
    assert 'Answer: <label>' in built["chain-of-thought"][-1].content
    assert "- positive\n- negative\n- neutral" in built["structured"][-1].content


def test_plain_text_prompt_for_base_models():
    task = load_task("topic")
    text = plain_text(messages(task, task.strategy("few-shot"), "The striker scored twice."))
    assert text.endswith("Text: The striker scored twice.\nAnswer:")
    assert "\nAnswer: sports\n\n" in text


@pytest.mark.parametrize("output, label", [
    ("positive", "positive"),
    ("NEGATIVE.", "negative"),
    ("**Neutral**", "neutral"),
    ("The sentiment of the text is POSITIVE.", "positive"),
    ("I would say it is mixed", "neutral"),
    ("This is neither positive nor negative", None),   # two labels named: ambiguous
    ("Frankenstein is a masterpiece", None),           # no label at all
    ("", None),
    ("positively", None),                              # whole words only
])
def test_parse_label(output, label):
    assert parse_label(output, load_task("sentiment")) == label


def test_chain_of_thought_answer_is_extracted():
    task = load_task("sentiment")
    extract = task.strategy("chain-of-thought").extract
    out = "The reviewer praises the acting but hates the plot, negative overall.\nAnswer: Negative"
    assert parse_label(out, task, extract) == "negative"
    # without the Answer line, the whole text is read (and two labels there is unparseable)
    assert parse_label("Good acting, so positive; bad plot, so negative.", task, extract) is None
    assert UNPARSED == "(unparsed)"


def write(tmp_path, text, name="task.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_user_task_file_with_its_own_strategy(tmp_path):
    path = write(tmp_path, """
        name: spam
        description: Is an SMS spam?
        labels:
          spam: [junk]
          ham: [legit, normal]
        instruction: Is this SMS {{ labels_text }}?
        examples:
          - {text: "You won a free cruise, reply YES", label: junk}
        strategies:
          zero-shot:
            user: "{{ instruction }} One word.\\nSMS: {{ text }}"
          terse:
            description: just the text
            user: "{{ text }} ->"
            continuation: " {{ label | upper }}"
            max_new_tokens: 3
        default_strategy: terse
    """)
    task = load_task(str(path))
    assert task.name == "spam" and task.labels == ("spam", "ham") and task.source == str(path)
    assert task.examples[0]["label"] == "spam"  # the synonym was normalised
    assert task.strategy().name == "terse" and task.strategy().max_new_tokens == 3
    user = messages(task, task.strategy("zero-shot"), "hi")[-1].content
    assert user == "Is this SMS spam or ham? One word.\nSMS: hi"
    assert "role" in task.strategies  # the shared strategies are still there
    assert task.fingerprint("terse") != task.fingerprint("zero-shot")


# (file text, the line the error must name (None: the whole file), words the message must contain).
# The messages come from the one spec-file kit (llmlab.specfile) that suites use too, so they gained
# the line and read "unknown key 'x'" where they read "unknown key(s) x" / "unknown field(s) x".
BAD = [
    ("name: x\nlabels: [a, b]\ninstruction: go\ncolour: red\n", 4, "unknown key 'colour'; known: "),
    ("name: x\nlabels: [a, b]\n", 1, "`instruction` must be a non-empty string"),
    ("name: x\nlabels: {a: [same], b: [same]}\ninstruction: go\n", 2, "'same' names both 'a' and 'b'"),
    ("name: x\nlabels: [a]\ninstruction: go\n", 2, "at least two labels"),
    ("name: x\nlabels:\n  a: [alpha]\n  b: 3\ninstruction: go\n", 4, "label 'b': its synonyms must be"),
    ("name: x\nlabels: [a, b]\ninstruction: '{{ nonsense }}'\n", 3, "'nonsense' is undefined"),
    ("name: x\nlabels: [a, b]\ninstruction: '{% if %}'\n", 3, "failed"),
    ("name: x\nlabels: [a, b]\ninstruction: go\nexamples:\n  - {text: t, label: c}\n", 5,
     "example 1 has label 'c'"),
    ("name: x\nlabels: [a, b]\ninstruction: go\nexamples:\n  - {text: t, label: a, reason: r}\n", 5,
     "example 1: unknown key 'reason' (did you mean 'reasoning'?)"),
    ("name: x\nlabels: [a, b]\ninstruction: go\nstrategies:\n  mine:\n    temperature: 1\n", 6,
     "strategy 'mine': unknown key 'temperature'"),
    ("name: x\nlabels: [a, b]\ninstruction: go\nstrategies:\n  mine: {shots: -1}\n", 5,
     "strategy 'mine': 'shots' must be a whole number >= 0, got -1"),
    ("name: x\nlabels: [a, b]\ninstruction: go\nstrategies:\n  mine:\n    extract: 'answer: \\w+'\n", 6,
     "needs a group"),
    ("name: x\nlabels: [a, b]\ninstruction: go\nstrategies:\n  mine:\n    user: 'no text here'\n", 6,
     "never shows {{ text }}"),
    ("name: x\nlabels: [a, b]\ninstruction: go\nstrategies:\n  few-shot:\n    description: d\n"
     "    answer: '{{ labl }}'\n", 7, "strategy 'few-shot', answer: template '{{ labl }}' failed: "),
    ("name: x\nlabels: [a, b\n", 3, "not valid YAML"),
    ("name: x\nname: y\nlabels: [a, b]\ninstruction: go\n", 2, "duplicate key 'name'"),
    ("- just\n- a list\n", None, "expected a mapping"),
]


@pytest.mark.parametrize("body, line, message", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_task_files_say_what_is_wrong_and_where(tmp_path, body, line, message):
    path = write(tmp_path, body)
    with pytest.raises(TaskError) as info:
        load_task(path)
    text = str(info.value)
    assert text.startswith(f"{path}, line {line}" if line else f"{path}:"), text
    assert message in text and "\n" not in text


def test_a_typo_in_the_bundled_sentiment_task_names_its_line(tmp_path):
    """The real bundled file, with the mistakes a user makes when copying it."""
    from importlib import resources

    lines = resources.files("llmlab.tasks").joinpath("sentiment.yaml").read_text().splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("labels:"))
    lines[at] = "lables:"
    path = tmp_path / "my_sentiment.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert str(info.value) == (f"{path}, line {at + 1}: the task: unknown key 'lables' "
                               "(did you mean 'labels'?)")

    lines[at] = "labels:"
    at = next(n for n, line in enumerate(lines) if line.strip().startswith("user: \"Review:"))
    lines[at] = lines[at].replace("{{ text }}", "{{ txet }}")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert str(info.value).startswith(f"{path}, line {at + 1}: strategy 'good-bad-mixed', user: template ")
    assert str(info.value).endswith(" failed: 'txet' is undefined (did you mean 'text'?)")


def test_unknown_task_and_strategy_suggest_names(tmp_path):
    with pytest.raises(TaskError, match="did you mean 'sentiment'"):
        load_task("sentimnet")
    with pytest.raises(TaskError, match="task file not found"):
        load_task(tmp_path / "missing.yaml")
    with pytest.raises(TaskError, match="did you mean 'few-shot'"):
        load_task("topic").strategy("fewshot")
    with pytest.raises(TaskError, match="needs worked examples"):
        load_task("classify", labels=["a", "b"]).strategy("few-shot")


def test_yes_and_no_labels_stay_words(tmp_path):
    path = tmp_path / "spam.yaml"
    path.write_text("name: spam\nlabels:\n  yes: [spam]\n  no: [ham]\n"
                    "instruction: Is this spam? yes or no.\n")
    task = load_task(str(path))
    assert task.labels == ("yes", "no") and task.normalise("NO") == "no" and task.normalise("spam") == "yes"
