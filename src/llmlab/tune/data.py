"""Training data for ``llmlab tune``: every accepted file becomes a list of conversations.

    chat JSONL          {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]} per line;
                        every assistant turn is trained
    prompt/completion   {"prompt": "...", "completion": "..."} per line (the prompt may also be a list
                        of messages); one user turn, one assistant turn
    labelled file       CSV, TSV, JSONL or Parquet plus a task: each row becomes the chat that
                        ``llmlab eval`` sends for it (``tasks.messages``, the task's strategy) and the
                        gold label's answer (the strategy's ``answer`` template); only that last
                        answer is trained, so few-shot examples stay prompt

A JSONL file without ``--task`` is read as chats or pairs, decided by its first line; a table (csv,
tsv, parquet) is always labelled, with ``eval``'s default task. The split into training and held-out
conversations is a seeded shuffle, stratified by gold label for a labelled file (scikit-learn's
``train_test_split``; ``folds`` is its ``StratifiedKFold``) so a small file's held-out rows keep its
label mix.

What it gives up: a held-out part too small to hold every label once is split unstratified; a
strategy whose answer needs a written reasoning (chain-of-thought) trains on an empty reasoning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..chat import Message, as_messages
from ..errors import DataError, LlmlabError

DEFAULT_TASK = "sentiment"  # as `llmlab eval`


@dataclass(frozen=True)
class Example:
    """One conversation to train on; ``where`` names it in errors ("line 7", "row 12")."""

    where: str
    messages: tuple[Message, ...]
    last_only: bool = False  # train the last assistant turn only (labelled rows: shots are prompt)


@dataclass
class TrainingData:
    examples: list[Example]
    source: str
    format: str        # chat | prompt-completion | labelled
    sha256: str        # of the file's bytes
    task: dict | None = None  # task name, strategy and fingerprint for a labelled file
    dataset: object = None    # a labelled file's evals Dataset, one row per example, in order

    @property
    def golds(self) -> list[str] | None:
        """Each example's gold label (a labelled file), else None."""
        return None if self.dataset is None else list(self.dataset.frame["gold"])


def read_training_data(path: str | Path, task: str | None = None, *, strategy: str | None = None,
                       labels: list[str] | None = None, columns: dict | None = None,
                       label_map: dict | None = None) -> TrainingData:
    """The conversations in ``path``, or a one-line DataError naming the file and line or row."""
    from ..evals.data import FORMATS, decode_file, numbered_json_lines

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"training data not found: {path}" if not path.exists() else
                        f"{path} is not a file; give a .jsonl, .csv, .tsv or .parquet file")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    kind = FORMATS.get(path.suffix.lower())
    if task is None and kind in ("jsonl", "json"):
        records = numbered_json_lines(decode_file(path), path)
        if not records:
            raise DataError(f"{path} has no lines")
        examples, fmt = _from_jsonl(records, path)
        return TrainingData(examples, str(path), fmt, sha)
    return _labelled(path, task or DEFAULT_TASK, strategy, labels, columns or {}, label_map, sha)


def _from_jsonl(records: list[tuple[int, dict]], path: Path) -> tuple[list[Example], str]:
    first = records[0][1]
    fmt = "chat" if "messages" in first else "prompt-completion" if "prompt" in first else None
    if fmt is None:
        raise DataError(f"{path} line {records[0][0]} has no 'messages' (a chat) nor 'prompt' and "
                        "'completion'; for a labelled file give --task")
    out = []
    for n, record in records:
        where = f"{path} line {n}"
        if fmt == "chat":
            if "messages" not in record:
                raise DataError(f"{where} has no 'messages' (the lines before it are chats)")
            msgs = _messages(record["messages"], where)
        else:
            missing = [k for k in ("prompt", "completion") if k not in record]
            if missing:
                raise DataError(f"{where} has no {' or '.join(map(repr, missing))}")
            prompt = record["prompt"]
            head = _messages(prompt, where) if isinstance(prompt, list) else _messages(
                [{"role": "user", "content": prompt}], where)
            msgs = head + _messages([{"role": "assistant", "content": record["completion"]}], where)
        if not any(m.role == "assistant" and m.content.strip() for m in msgs):
            raise DataError(f"{where} has no assistant turn with text: nothing to train on")
        out.append(Example(f"line {n}", tuple(msgs)))
    return out, fmt


def _messages(items, where: str) -> list[Message]:
    if not isinstance(items, list) or not items:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    try:
        return as_messages(items)
    except LlmlabError as exc:
        raise DataError(f"{where}: {exc}") from exc


def _labelled(path: Path, task_name: str, strategy_name: str | None, labels, columns: dict, label_map,
              sha: str) -> TrainingData:
    from ..evals.data import load_dataset
    from ..tasks import load_task, messages
    from ..tasks.prompts import render

    task = load_task(task_name, labels)
    strategy = task.strategy(strategy_name)
    ds = load_dataset(path, task, text_col=columns.get("text"), label_col=columns.get("label"),
                      id_col=columns.get("id"), label_map=label_map)
    if not task.labels:  # classify without --labels: the label set is the data's, as in eval
        task = task.with_labels(ds.labels)
    examples = []
    for item_id, text, gold in ds.frame[["id", "text", "gold"]].itertuples(index=False):
        answer = render(strategy.answer, label=gold, reasoning="")
        msgs = [*messages(task, strategy, text), Message("assistant", answer)]
        examples.append(Example(f"row {item_id}", tuple(msgs), last_only=True))
    info = {"task": task.name, "strategy": strategy.name, "fingerprint": task.fingerprint(strategy.name),
            "labels": list(task.labels), "source": task.source}
    return TrainingData(examples, str(path), "labelled", sha, info, ds)


def split(examples: list, held_out: float, seed: int, source: str = "the data",
          strata: list | None = None) -> tuple[list, list]:
    """(training, held-out) by a seeded shuffle; ``held_out`` is a fraction (0 keeps none back);
    ``strata`` (one label per example) keeps the label mix in both parts where it can.

    >>> train, val = split(list(range(10)), 0.2, seed=0)
    >>> len(train), len(val)
    (8, 2)
    """
    if not 0 <= held_out < 1:
        raise DataError(f"--held-out must be a fraction in [0, 1), got {held_out}")
    n = len(examples)
    n_val = max(1, round(n * held_out)) if held_out > 0 else 0
    if n - n_val < 2:
        need = 2 + (1 if held_out > 0 else 0)
        raise DataError(f"{source} has {n} example{'s' * (n != 1)}: too few to split into training and "
                        f"held-out conversations (need at least {need}, or --held-out 0)")
    if n_val == 0:
        return list(examples), []
    train, val = _split_positions(n, n_val, seed, strata)
    return [examples[i] for i in train], [examples[i] for i in val]


def _split_positions(n: int, n_val: int, seed: int, strata) -> tuple[list[int], list[int]]:
    from sklearn.model_selection import train_test_split

    try:
        train, val = train_test_split(range(n), test_size=n_val, random_state=seed, stratify=strata)
    except ValueError:  # a label with one row, or fewer held-out rows than labels: plain shuffle
        train, val = train_test_split(range(n), test_size=n_val, random_state=seed)
    return sorted(train), sorted(val)


def folds(golds: list[str], k: int, seed: int, source: str = "the data") -> list[tuple[list[int], list[int]]]:
    """``k`` (training positions, test positions) pairs, stratified by label: every row is tested once."""
    import warnings

    from sklearn.model_selection import KFold, StratifiedKFold

    if k < 2:
        raise DataError(f"--kfold must be at least 2, got {k}")
    if len(golds) < 2 * k:
        raise DataError(f"{source} has {len(golds)} rows: too few for {k} folds (need at least {2 * k})")
    rows = list(range(len(golds)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a label rarer than k: its rows miss some folds, said below
        try:
            pairs = StratifiedKFold(k, shuffle=True, random_state=seed).split(rows, golds)
            return [(list(a), list(b)) for a, b in pairs]
        except ValueError:  # every label rarer than k
            return [(list(a), list(b)) for a, b in KFold(k, shuffle=True, random_state=seed).split(rows)]
