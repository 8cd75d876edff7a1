"""Scoring multiple-choice items the way lm-evaluation-harness scores them.

Reading: a benchmark file (JSONL, a JSON list, or Parquet) becomes ``Item``s (``formats.py``), each
problem reported in one line naming the row. Prompting: the context is the item's description,
then ``num_fewshot`` solved examples each followed by ``"\\n\\n"``, then the query; each choice is
scored as ``" " + choice`` after it. Examples are the first ones of the pool (the harness's
``first_n`` sampler, MMLU's rule), the item itself left out, and for MMLU of the same subject.

Log-likelihoods: as the harness's ``_encode_pair``, whitespace ending the context moves to the
continuation, ``context + continuation`` is tokenized whole and the continuation is what follows the
context's own tokens; the model sums the continuation tokens' log-probabilities after the context
ids (``Model.score_ids``). Remote models score the texts instead (``Model.score``).

Metrics per item: ``acc`` (the highest log-likelihood is the gold choice), ``acc_norm`` (the
highest per character of the choice), MC2's ``acc`` (the probability mass on true answers,
normalised over the choices). A run's value is their mean, its standard error
``scipy.stats.sem`` (sample standard deviation over sqrt n), as the harness reports.

What it gives up: the harness's default sampler for ARC and HellaSwag draws examples at random
with its own seed; llmlab always takes the first ones, so few-shot ARC/HellaSwag scores agree with a
harness task that sets ``fewshot_config: {sampler: first_n}``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from ..errors import DataError, MissingDependencyError, NotSupportedError
from .formats import FORMATS, Format, Item


def read_rows(path: str | Path) -> list[dict]:
    """A benchmark file's rows as dicts (nested fields kept), or a DataError saying why not."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            import pandas as pd

            return pd.read_parquet(path).to_dict("records")
        except ImportError as exc:
            raise MissingDependencyError("reading Parquet needs pandas and pyarrow: pip install "
                                         "'llmlab[eval]'") from exc
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds for a broken file
            why = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
            raise DataError(f"{path}: not a readable Parquet file ({why})") from None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    if suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path}: a .json benchmark file is a list of objects")
        return rows
    if suffix not in (".jsonl", ".ndjson"):
        raise DataError(f"{path}: a benchmark file is .jsonl, .json or .parquet, not {suffix or 'no suffix'}")
    from ..evals.data import numbered_json_lines

    rows = [row for _, row in numbered_json_lines(text, path)]
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def load_items(path: str | Path, benchmark: str, fields: dict[str, str] | None = None,
               limit: int | None = None) -> list[Item]:
    """The file's items in the benchmark's format; ``fields`` remaps NAME -> column (dotted paths)."""
    fmt = get_format(benchmark)
    fields = dict(fields or {})
    unknown = set(fields) - set(fmt.fields)
    if unknown:
        raise DataError(f"{benchmark} has no field {', '.join(sorted(unknown))}; its fields are "
                        f"{', '.join(fmt.fields)}")
    where = {**fmt.fields, **fields}
    rows = read_rows(path)
    ids = [str(r.get("id", r.get("ind", ""))) for r in rows]
    unique = all(ids) and len(set(ids)) == len(ids)
    items = []
    for n, row in enumerate(rows[:limit] if limit else rows):
        key = ids[n] if unique else f"row-{n + 1}"
        items.append(fmt.item(row, where, f"{Path(path).name} {key}"))
        items[-1].id = key
    return items


def get_format(benchmark: str) -> Format:
    if benchmark not in FORMATS:
        raise DataError(f"unknown benchmark {benchmark!r}; one of {', '.join(FORMATS)}")
    return FORMATS[benchmark]


def prefix(item: Item, pool: list[Item], num_fewshot: int, same_pool: bool) -> str:
    """The description and the first ``num_fewshot`` solved examples of ``pool`` (not ``item`` itself,
    and of its subject where it has one), as the harness writes them before the query."""
    if num_fewshot <= 0:
        return item.description
    candidates = [p for p in pool if not (same_pool and p.id == item.id)
                  and (item.group is None or p.group == item.group)]
    if len(candidates) < num_fewshot:
        about = f" of subject {item.group}" if item.group else ""
        raise DataError(f"{num_fewshot}-shot needs {num_fewshot} examples{about} besides the item, the "
                        f"few-shot pool has {len(candidates)}")
    return item.description + "".join(p.example() + "\n\n" for p in candidates[:num_fewshot])


def loglikelihoods(model, requests: list[tuple[str, str]]) -> tuple[list[float], int]:
    """Each (context, continuation)'s summed log-probability, and the tokens the requests hold
    (every context and continuation counted once per request, as a server would be sent them)."""
    out: list[float] = [0.0] * len(requests)
    groups: dict[str, list[tuple[int, str]]] = {}
    for i, (ctx, cont) in enumerate(requests):
        spaces = len(ctx) - len(ctx.rstrip())
        if spaces:
            ctx, cont = ctx[:-spaces], ctx[-spaces:] + cont
        groups.setdefault(ctx, []).append((i, cont))
    tokens = 0
    for ctx, conts in groups.items():
        try:
            ctx_ids = model.encode(ctx) if ctx else _prefix_ids(model)
            cont_ids = [model.encode(ctx + c)[len(ctx_ids):] for _, c in conts]
            values = model.score_ids(ctx_ids, cont_ids)
            tokens += len(ctx_ids) * len(conts) + sum(map(len, cont_ids))
        except NotSupportedError:
            if not model.can("score"):
                raise
            values = model.score(ctx, [c for _, c in conts])  # a server tokenizes the text itself
            tokens += sum(max(len(model.tokenize(ctx + c)), 1) for _, c in conts)
        for (i, _), v in zip(conts, values, strict=True):
            out[i] = v
    return out, tokens


def _prefix_ids(model) -> list[int]:
    """An empty context is the end-of-text token, as the harness conditions on it."""
    ids = model.encode("")
    return ids or model.token_ids(model.info.eos_token, special=True)


def item_metrics(item: Item, lls: list[float]) -> dict:
    """The harness's per-item metrics from the choices' log-likelihoods."""
    best = max(range(len(lls)), key=lls.__getitem__)  # numpy argmax: the first of equal maxima
    normed = [ll / len(c) if c else ll for ll, c in zip(lls, item.choices, strict=True)]
    best_norm = max(range(len(normed)), key=normed.__getitem__)
    out = {"pred": best, "acc": float(best == item.gold), "acc_norm": float(best_norm == item.gold)}
    if item.truth is not None:  # MC2
        top = max(lls)
        probs = [math.exp(ll - top) for ll in lls]
        out["acc"] = sum(p for p, t in zip(probs, item.truth, strict=True) if t) / sum(probs)
    return out


def aggregate(values: list[float]) -> tuple[float, float | None]:
    """Mean and its standard error (scipy.stats.sem: ddof=1), None for a single item."""
    from scipy.stats import sem

    mean = sum(values) / len(values)
    return mean, (float(sem(values)) if len(values) > 1 else None)


def items_digest(items: list[Item], benchmark: str) -> str:
    data = json.dumps([[i.id, i.query, i.choices, i.gold, i.target, i.truth, i.description] for i in items])
    return hashlib.sha256(f"{benchmark}\n{data}".encode()).hexdigest()
