"""Labelled datasets: CSV, TSV, JSONL and Parquet read with pandas, mapped and checked up front.

Every problem a file can have is found before any model runs and reported in one line that names
the file and what to do: a missing file or column, an empty file, text that is not UTF-8, rows with
no text or no label, labels outside the task's set. Columns are found by common names (``text``,
``sentence``, ``review`` ...; ``label``, ``gold``, ``ground_truth_label`` ...) when not given, and
the label column can be recognised by its values. Gold labels are normalised through the task
(case, spaces, synonyms); ``label_map`` renames codes such as ``0``/``1`` first.

What it gives up: the whole file is read into memory; one text column per item.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, MissingDependencyError
from ..tasks.spec import TaskSpec, _key

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
TEXT_NAMES = ("text", "sentence", "review", "content", "document", "body", "utterance", "tweet",
              "comment", "input", "message", "headline", "title", "phrase", "question", "post", "passage",
              "excerpt", "statement", "claim", "abstract", "description", "snippet", "query", "prompt")
LABEL_NAMES = ("label", "labels", "gold", "gold_label", "ground_truth_label", "ground_truth", "target",
               "class", "category", "sentiment", "topic", "y", "output", "answer", "polarity", "emotion",
               "intent", "stance", "tag", "annotation")


@dataclass
class Dataset:
    """Items to evaluate: a DataFrame with ``id``, ``text`` and ``gold`` (task labels)."""

    frame: object  # pandas.DataFrame
    source: str
    text_col: str
    label_col: str
    sha256: str
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.frame)

    def head(self, n: int) -> Dataset:
        frame = self.frame.head(n).reset_index(drop=True)
        return Dataset(frame, self.source, self.text_col, self.label_col, _digest(frame), self.notes)

    @property
    def labels(self) -> list[str]:
        return sorted(set(self.frame["gold"]))


def read_table(path: str | Path):
    """The file as a DataFrame of strings (missing cells are NaN), or a DataError saying why not."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a .csv, .tsv, .jsonl or .parquet file")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"cannot tell the format of {path.name} from its extension; use one of "
                        f"{', '.join(sorted(FORMATS))}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    if kind == "parquet":
        try:
            frame = pd.read_parquet(path)
        except ImportError as exc:
            raise MissingDependencyError("pyarrow", "eval") from exc
        except Exception as exc:  # pyarrow raises its own types for a damaged file
            raise DataError(f"{path} is not a readable Parquet file ({exc})") from exc
        return frame.astype(object).where(frame.notna(), None)
    text = decode_file(path)
    if not text.strip():
        raise DataError(f"{path} is empty (only whitespace)")
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(io.StringIO(text), sep="\t" if kind == "tsv" else ",", dtype=str,
                                keep_default_na=False, na_values=[""], skip_blank_lines=True)
        elif kind == "jsonl":
            frame = pd.DataFrame(_json_lines(text, path))
        else:
            frame = pd.read_json(io.StringIO(text), dtype=False)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} is not a well-formed {kind.upper()} file: {' '.join(str(exc).split())}") \
            from exc
    except DataError:
        raise  # already one line that names the file
    except ValueError as exc:
        raise DataError(f"{path} is not readable as {kind.upper()}: {exc}") from exc
    return frame


def load_dataset(source, task: TaskSpec | None = None, *, text_col: str | None = None,
                 label_col: str | None = None, id_col: str | None = None,
                 label_map: dict | None = None) -> Dataset:
    """Read, map and check a labelled file (or a DataFrame); gold labels come out as task labels.

    With a task that has no labels (``classify`` without ``--labels``) the gold labels are kept as
    written, trimmed; the caller takes the label set from the data.
    """
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        frame, name = source.copy(), "<DataFrame>"
    else:
        frame, name = read_table(source), str(source)
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{name} has no rows" + (" (only a header)" if len(frame.columns) else ""))
    notes = []
    text_col = _pick(frame, text_col, "text", name, TEXT_NAMES, notes)
    label_col = _pick(frame, label_col, "label", name, LABEL_NAMES, notes, task=task, exclude=text_col,
                      label_map=label_map)
    if text_col == label_col:
        raise DataError(f"{name}: the text and label column are both {text_col!r}")
    ids = _ids(frame, id_col, name)
    texts = frame[text_col]
    missing = [i for i, t in zip(ids, texts, strict=True) if _blank(t)]
    if missing:
        raise DataError(f"{name}: {_rows(missing)} no text in column {text_col!r}")
    missing = [i for i, g in zip(ids, frame[label_col], strict=True) if _blank(g)]
    if missing:
        raise DataError(f"{name}: {_rows(missing)} no label in column {label_col!r}")
    golds = frame[label_col].map(_as_text)
    if label_map:
        table = {_key(k): str(v) for k, v in label_map.items()}
        golds = golds.map(lambda g: table.get(_key(g), g))
    if task is not None and task.labels:
        golds = _normalise(golds, ids, task, name, label_col)
    out = pd.DataFrame({"id": ids, "text": texts.map(str).tolist(), "gold": golds.tolist()})
    return Dataset(out, name, text_col, label_col, _digest(out), tuple(notes))


def decode_file(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
                        "re-save it as UTF-8") from exc


def _json_lines(text: str, path: Path) -> list[dict]:
    return [record for _, record in numbered_json_lines(text, path)]


def numbered_json_lines(text: str, path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of JSONL text; a DataError naming the line."""
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {n} is not valid JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise DataError(f"{path} line {n} is not a JSON object")
        records.append((n, record))
    return records


def _pick(frame, given, what, name, names, notes, task=None, exclude=None, label_map=None) -> str:
    columns = list(frame.columns)
    if given is not None:
        if given not in columns:
            raise DataError(f"{name} has no column {given!r}; its columns are: {', '.join(columns)}")
        return given
    lower = {c.casefold().strip(): c for c in columns if c != exclude}
    for candidate in names:
        if candidate in lower:
            return lower[candidate]
    if what == "label":  # gold_label_3, label_id ... (not for the text: review_id is no review)
        for candidate in names[:4]:
            for key, col in lower.items():
                if candidate in key:
                    notes.append(f"label column: {col!r} (guessed from its name; --label-col sets it)")
                    return col
    if task is not None and task.labels:  # the column whose values are the task's labels
        table = {_key(k): str(v) for k, v in (label_map or {}).items()}
        rates = {c: frame[c].map(lambda v: task.normalise(table.get(_key(v), v)) is not None).mean()
                 for c in lower.values()}
        best = max(rates, key=rates.get, default=None)
        if best is not None and rates[best] >= 0.5:
            notes.append(f"label column: {best!r} (its values are {task.name} labels)")
            return best
    if what == "text":  # the column of longest strings is the text (ids and labels are short)
        lengths = {c: frame[c].map(lambda v: len(v) if isinstance(v, str) else 0).mean()
                   for c in lower.values()}
        best = max(lengths, key=lengths.get, default=None)
        if best is not None and lengths[best] >= 20:
            notes.append(f"text column: {best!r} (its longest strings; --text-col sets it)")
            return best
    if what == "label" and len(lower) == 1:  # only one column besides the text
        (only,) = lower.values()
        notes.append(f"label column: {only!r} (the only other column; --label-col sets it)")
        return only
    if len(columns) == 1:  # one column: most likely a separator the reader did not expect
        seps = [f"{sep!r}" for sep in (";", "\t", "|", ",") if sep in columns[0]]
        if seps:
            raise DataError(f"{name} reads as a single column {columns[0]!r}: is it separated by "
                            f"{seps[0]}? Save it with commas (.csv) or tabs (.tsv)")
    raise DataError(f"cannot tell which column of {name} holds the {what}; columns: "
                    f"{', '.join(columns)}; pass --{what}-col")


def _ids(frame, id_col, name) -> list[str]:
    """The user's ids, never silently replaced: an ``id`` column is used when there is one (and
    must be unique, like any --id-col); a file without one gets row numbers counting from 1."""
    if id_col is None and "id" in frame.columns:
        id_col = "id"
    if id_col is None:
        return [str(i) for i in range(1, len(frame) + 1)]
    if id_col not in frame.columns:
        raise DataError(f"{name} has no column {id_col!r}; its columns are: {', '.join(frame.columns)}")
    if frame[id_col].isna().any():
        rows = [str(n + 1) for n, empty in enumerate(frame[id_col].isna()) if empty][:5]
        raise DataError(f"{name}: the id column {id_col!r} is empty in data row(s) {', '.join(rows)}")
    ids = [str(v) for v in frame[id_col]]
    counts = Counter(ids)
    repeated = [i for i in counts if counts[i] > 1]
    if repeated:
        shown = ", ".join(repeated[:5]) + (f" and {len(repeated) - 5} more" if len(repeated) > 5 else "")
        raise DataError(f"{name}: the id column {id_col!r} repeats {shown}; ids must be unique "
                        "(or pass --id-col another column)")
    return ids


def _normalise(golds, ids, task: TaskSpec, name: str, label_col: str):
    mapped = golds.map(task.normalise)
    bad = golds[mapped.isna()]
    if len(bad):
        counts = bad.value_counts()
        first = {v: ids[bad.index[list(bad).index(v)]] for v in counts.index[:5]}
        listed = ", ".join(f"{v!r} ({n} rows, first row {first[v]})" for v, n in counts.head(5).items())
        raise DataError(
            f"{name}: column {label_col!r} has labels outside the {task.name} task's set "
            f"({', '.join(task.labels)}): {listed}; map them with --label-map VALUE=LABEL"
            + (", or give them in --labels" if task.name == "classify" else ", or use --task classify"))
    return mapped


def _blank(value) -> bool:
    if value is None or value is _pandas_na():
        return True
    if isinstance(value, float):
        return value != value  # NaN
    return isinstance(value, str) and not value.strip()


def _pandas_na():
    import pandas as pd

    return pd.NA


def _as_text(value) -> str:
    """A cell as text; whole floats (labels read from Parquet or JSON as 1.0) lose their '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _rows(ids: list[str]) -> str:
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return f"row {shown} has" if len(ids) == 1 else f"rows {shown} have"


def _digest(frame) -> str:
    data = json.dumps(frame[["id", "text", "gold"]].values.tolist(), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()
