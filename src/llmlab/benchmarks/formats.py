"""The multiple-choice benchmarks' formats: a file's rows become items exactly as
lm-evaluation-harness builds them from the same rows.

Each format reads the fields of its dataset's usual layout (the Hugging Face release; nested fields
by dotted path, ``choices.text``), which ``--field NAME=COLUMN`` remaps for other layouts. An item is
what the harness asks the model: a query (or, for Winogrande, one query per option), the choices
scored after it with the target delimiter ``" "``, the gold index, and for MMLU the subject's
description line. The prompts reproduce the harness's task files (``lm_eval/tasks/*``, v0.4):

    arc             "Question: {question}\\nAnswer:"  +  " {choice}"               acc, acc_norm
    hellaswag       "{activity}: {ctx_a} {Ctx_b}" cleaned of WikiHow's [brackets]   acc, acc_norm
    mmlu            "{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:" + " A".." D"  acc
    truthfulqa-mc1  the harness's six-question preamble + "Q: {question}\\nA:"      acc
    truthfulqa-mc2  same prompt; acc is the normalised probability mass of the true answers
    winogrande      the sentence up to the blank, once per option; " {rest}" scored  acc

What it gives up: only these six formats are built in; another multiple-choice layout goes through
a custom lm-eval task of its own, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import DataError

TQA_PREAMBLE = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain.")


@dataclass
class Item:
    """One benchmark question as the harness asks it."""

    id: str
    query: str | list[str]      # the text before the choices; a list (one per option) for Winogrande
    choices: list[str]          # what acc_norm's lengths count: the answers, or Winogrande's queries
    gold: int                   # index of the right choice (MC2: of the first true answer)
    target: str | None = None   # Winogrande: the rest of the sentence, scored after each query
    truth: list[int] | None = None  # MC2: 1 for each true answer
    description: str = ""       # MMLU: "The following are multiple choice questions ... about X.\n\n"
    group: str | None = None    # MMLU's subject: few-shot examples come from the same one

    def example(self) -> str:
        """This item as a solved few-shot example: the query, the delimiter, its answer."""
        if isinstance(self.query, list):
            return f"{self.query[self.gold]} {self.target}"
        return f"{self.query} {self.choices[self.gold]}"

    def requests(self, prefix: str) -> list[tuple[str, str]]:
        """(context, continuation) pairs to score, in choice order."""
        if isinstance(self.query, list):
            return [(prefix + q, f" {self.target}") for q in self.query]
        return [(prefix + self.query, f" {c}") for c in self.choices]


@dataclass(frozen=True)
class Format:
    name: str
    fields: dict[str, str]        # field -> where the usual layout keeps it
    metrics: tuple[str, ...]      # what the harness reports for it
    optional: tuple[str, ...] = ()
    fewshot: bool = True          # TruthfulQA carries its own six examples
    notes: dict = field(default_factory=dict)

    def item(self, row: dict, where: dict[str, str], key: str) -> Item:
        values = {}
        for name in self.fields:
            path = where[name]
            try:
                values[name] = _get(row, path)
            except KeyError:
                if name in self.optional:
                    values[name] = None
                    continue
                raise DataError(f"{key}: no field {path!r} for {self.name}'s {name} (map it with "
                                f"--field {name}=COLUMN)") from None
        return _BUILDERS[self.name](values, key)


def _get(row: dict, path: str):
    value = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(path)
        value = value[part]
    if hasattr(value, "tolist"):  # Parquet's nested lists arrive as numpy arrays
        value = value.tolist()
    return value


def _texts(value, key: str, what: str) -> list[str]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) for v in value):
        raise DataError(f"{key}: {what} must be a list of at least two texts, got {str(value)[:60]!r}")
    return value


def _text(value, key: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{key}: {what} must be a non-empty text, got {str(value)[:60]!r}")
    return value


def _index(answer, labels: list[str] | None, n: int, key: str) -> int:
    """The gold index from a label (``"B"``, ``"3"``) among ``labels``, a letter, or an index."""
    if labels and str(answer) in [str(x) for x in labels]:
        return [str(x) for x in labels].index(str(answer))
    if isinstance(answer, str) and len(answer) == 1 and answer.isalpha() and not labels:
        i = ord(answer.upper()) - ord("A")
    elif isinstance(answer, (int, float)) and not isinstance(answer, bool) and float(answer).is_integer():
        i = int(answer)
    elif isinstance(answer, str) and answer.strip().isdigit() and not labels:
        i = int(answer)
    else:
        shown = f" (labels {', '.join(map(str, labels))})" if labels else ""
        raise DataError(f"{key}: answer {answer!r} names none of the {n} choices{shown}")
    if not 0 <= i < n:
        raise DataError(f"{key}: answer {answer!r} is outside the {n} choices")
    return i


def _arc(v: dict, key: str) -> Item:
    choices = _texts(v["choices"], key, "choices")
    labels = v["labels"]
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(choices)):
        raise DataError(f"{key}: {len(choices)} choices but labels {str(labels)[:60]!r}")
    question = _text(v["question"], key, "question")
    gold = _index(v["answer"], labels, len(choices), key)
    return Item(key, f"Question: {question}\nAnswer:", choices, gold)


def _wikihow(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def _hellaswag(v: dict, key: str) -> Item:
    ctx = _text(v["ctx_a"], key, "ctx_a") + " " + str(v["ctx_b"] or "").capitalize()
    endings = _texts(v["endings"], key, "endings")
    query = _wikihow(_text(v["activity_label"], key, "activity_label") + ": " + ctx)
    return Item(key, query, [_wikihow(e) for e in endings], _index(v["label"], None, len(endings), key))


def _mmlu(v: dict, key: str) -> Item:
    choices = _texts(v["choices"], key, "choices")
    if len(choices) != 4:
        raise DataError(f"{key}: MMLU items have four choices (A-D), this one has {len(choices)}")
    letters = "ABCD"
    query = (_text(v["question"], key, "question").strip() + "\n"
             + "".join(f"{c}. {t}\n" for c, t in zip(letters, choices, strict=True)) + "Answer:")
    subject = v["subject"]
    about = " ".join(str(subject).split("_")) if subject else None
    description = (f"The following are multiple choice questions (with answers) about {about}.\n\n"
                   if about else "")
    return Item(key, query, list(letters), _index(v["answer"], None, 4, key), description=description,
                group=subject or None)


def _truthfulqa(targets: dict, key: str, v: dict) -> tuple[str, list[str], list[int]]:
    choices = _texts(targets["choices"], key, "choices")
    truth = targets["labels"]
    if (not isinstance(truth, list) or len(truth) != len(choices) or not set(truth) <= {0, 1}
            or 1 not in truth):
        raise DataError(f"{key}: labels must give 0 or 1 for each of the {len(choices)} choices, "
                        "at least one 1")
    query = f"{TQA_PREAMBLE}\n\nQ: {_text(v['question'], key, 'question')}\nA:"
    return query, choices, [int(t) for t in truth]


def _mc1(v: dict, key: str) -> Item:
    query, choices, truth = _truthfulqa({"choices": v["choices"], "labels": v["labels"]}, key, v)
    return Item(key, query, choices, truth.index(1))


def _mc2(v: dict, key: str) -> Item:
    query, choices, truth = _truthfulqa({"choices": v["choices"], "labels": v["labels"]}, key, v)
    return Item(key, query, choices, truth.index(1), truth=truth)


def _winogrande(v: dict, key: str) -> Item:
    sentence = _text(v["sentence"], key, "sentence")
    if "_" not in sentence:
        raise DataError(f"{key}: a Winogrande sentence has a blank '_' to fill, this one has none")
    at = sentence.index("_")
    options = [_text(v["option1"], key, "option1"), _text(v["option2"], key, "option2")]
    queries = [sentence[:at] + o for o in options]
    answer = str(v["answer"]).strip()
    if answer not in ("1", "2"):
        raise DataError(f"{key}: answer must be 1 or 2 (option1 or option2), got {v['answer']!r}")
    return Item(key, queries, queries, int(answer) - 1, target=sentence[at + 1:].strip())


_BUILDERS = {"arc": _arc, "hellaswag": _hellaswag, "mmlu": _mmlu, "truthfulqa-mc1": _mc1,
             "truthfulqa-mc2": _mc2, "winogrande": _winogrande}

FORMATS = {
    "arc": Format("arc", {"question": "question", "choices": "choices.text", "labels": "choices.label",
                          "answer": "answerKey"}, ("acc", "acc_norm"), optional=("labels",)),
    "hellaswag": Format("hellaswag", {"activity_label": "activity_label", "ctx_a": "ctx_a", "ctx_b": "ctx_b",
                                      "endings": "endings", "label": "label"}, ("acc", "acc_norm")),
    "mmlu": Format("mmlu", {"question": "question", "choices": "choices", "answer": "answer",
                            "subject": "subject"}, ("acc",), optional=("subject",)),
    "truthfulqa-mc1": Format("truthfulqa-mc1", {"question": "question", "choices": "mc1_targets.choices",
                                                "labels": "mc1_targets.labels"}, ("acc",), fewshot=False),
    "truthfulqa-mc2": Format("truthfulqa-mc2", {"question": "question", "choices": "mc2_targets.choices",
                                                "labels": "mc2_targets.labels"}, ("acc",), fewshot=False),
    "winogrande": Format("winogrande", {"sentence": "sentence", "option1": "option1", "option2": "option2",
                                        "answer": "answer"}, ("acc",)),
}
