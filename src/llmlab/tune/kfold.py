"""``llmlab tune --kfold K``: K adapters, each tested on the rows it never saw; one honest accuracy.

    >>> from llmlab.tune.kfold import kfold
    >>> cv = kfold("film.tsv", "hf/smollm2", "adapters/film-cv", k=5)   # doctest: +SKIP
    >>> cv.print()     # base and tuned over every row, 95% intervals, McNemar; one row per fold

The labelled file's rows are cut into K folds stratified by label (scikit-learn's ``StratifiedKFold``,
seeded). Fold i trains an adapter in ``OUT/fold-i`` on the other rows (with their own held-out split
for early stopping, as a single ``tune`` has) and ``llmlab eval`` asks it about fold i's rows; the base
model answers every row once. The K folds' predictions together cover the file, so accuracy and its
interval are computed over all N rows, and McNemar compares base and tuned on the same N items.
``OUT/kfold.json`` keeps the per-fold and pooled figures.

Each fold is an ordinary stored ``tune`` run and each evaluation an ordinary ``eval`` run, so an
interrupted cross-validation resumes fold by fold: finished folds are not retrained.

What it gives up: every fold trains from scratch (K times the cost of one run); the folds' adapters
differ, so the pooled accuracy describes the recipe, not any single adapter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..runs.table import Column, Table, print_tables


@dataclass
class KFoldResult:
    out: Path
    k: int
    task: str
    gold: list[str]
    base: list[str]            # the base model's prediction per row, in file order
    tuned: list[str]           # each row's prediction by the fold adapter that never saw it
    folds: list[dict] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        from ..evals import metrics

        base = metrics.classification(self.gold, self.base, self.labels)
        tuned = metrics.classification(self.gold, self.tuned, self.labels)
        test = metrics.mcnemar([p == g for p, g in zip(self.base, self.gold, strict=True)],
                               [p == g for p, g in zip(self.tuned, self.gold, strict=True)])
        return {"k": self.k, "n": len(self.gold), "task": self.task,
                "base": {"accuracy": base["accuracy"], "ci": list(base["accuracy_ci"]),
                         "macro_f1": base["macro_f1"]},
                "tuned": {"accuracy": tuned["accuracy"], "ci": list(tuned["accuracy_ci"]),
                          "macro_f1": tuned["macro_f1"]},
                "mcnemar_p": test["p_value"], "only_base": test["only_a"], "only_tuned": test["only_b"],
                "folds": self.folds}

    def tables(self) -> list[Table]:
        s = self.summary()
        t = Table(["model", Column("n", justify="right"), Column("accuracy", justify="right"),
                   Column("95% CI", justify="right"), Column("macro-F1", justify="right")],
                  title=f"{self.k}-fold cross-validation ({self.task}): every row tested once",
                  title_justify="left")
        for name in ("base", "tuned"):
            lo, hi = s[name]["ci"]
            t.add_row(name, str(s["n"]), f"{s[name]['accuracy']:.3f}", f"[{lo:.3f}, {hi:.3f}]",
                      f"{s[name]['macro_f1']:.3f}")
        t.add_row("McNemar", "", f"p = {s['mcnemar_p']:.3g}", f"only base {s['only_base']}, "
                  f"only tuned {s['only_tuned']}", "")
        f = Table([Column("fold", justify="right"), Column("train", justify="right"),
                   Column("test", justify="right"), Column("best epoch", justify="right"),
                   Column("held-out loss", justify="right"), Column("base acc.", justify="right"),
                   Column("tuned acc.", justify="right"), "run"], title="folds", title_justify="left")
        for d in self.folds:
            f.add_row(str(d["fold"]), str(d["train_rows"]), str(d["test_rows"]), str(d["best_epoch"] or ""),
                      "" if d["val_loss"] is None else f"{d['val_loss']:.4f}", f"{d['base_accuracy']:.3f}",
                      f"{d['tuned_accuracy']:.3f}", str(d["run_id"] or ""))
        return [t, f]

    def print(self, console=None) -> None:
        print_tables(self.tables(), self.notes, console)


def kfold(data, model: str, out, k: int = 5, *, task: str | None = None, strategy: str | None = None,
          labels=None, columns: dict | None = None, label_map: dict | None = None, settings=None,
          method: str = "generate", fresh: bool = False, progress: bool = True, store="default",
          loaded=None, model_options: dict | None = None) -> KFoldResult:
    """Train ``k`` adapters under ``out`` and test each on its own fold; see the module docstring."""
    from ..config import prepare_out
    from ..models.registry import load_model
    from .data import folds, read_training_data
    from .proof import _evaluate, _store, task_ref
    from .run import tune
    from .trainer import Settings

    s = settings or Settings()
    training = read_training_data(data, task, strategy=strategy, labels=labels, columns=columns,
                                  label_map=label_map)
    if training.dataset is None:
        raise ConfigError(f"--kfold needs a labelled file and its task; {training.source} holds "
                          f"{training.format} conversations")
    gold = training.golds
    pairs = folds(gold, k, s.seed, training.source)
    out = prepare_out(out).resolve()
    info = training.task
    frame = training.dataset.frame[["id", "text", "gold"]]
    read = {"labels": info["labels"], "strategy": info["strategy"],
            "columns": {"text": "text", "label": "gold", "id": "id"}}
    db = _store(store)
    base = loaded if loaded is not None else load_model(model, log=False, **(model_options or {}))
    try:
        base_eval = _evaluate(frame, task_ref(info), [base], method, db, progress, **read)
        base_pred = [i["pred"] for i in base_eval.runs[0].items]
        tuned_pred: list[str | None] = [None] * len(gold)
        fold_rows = []
        for i, (train_pos, test_pos) in enumerate(pairs, 1):
            r = tune(data, model, out / f"fold-{i}", task=task, strategy=strategy, labels=labels,
                     columns=columns, label_map=label_map, settings=s, fresh=fresh, progress=progress,
                     store=db, loaded=base, rows=train_pos)
            adapted = load_model(f"{model}+{r.out}", log=False, weights_from=base, **(model_options or {}))
            try:
                ev = _evaluate(frame.iloc[test_pos].reset_index(drop=True), task_ref(info), [adapted], method,
                               db, progress, **read)
            finally:
                adapted.close()
            preds = [it["pred"] for it in ev.runs[0].items]
            for pos, pred in zip(test_pos, preds, strict=True):
                tuned_pred[pos] = pred
            fold_rows.append({
                "fold": i, "train_rows": len(train_pos) - len(r.held_out), "held_out_rows": len(r.held_out),
                "test_rows": len(test_pos), "best_epoch": r.summary.get("best_epoch"),
                "val_loss": r.summary.get("val_loss"), "run_id": r.run_id, "adapter": str(r.out),
                "base_accuracy": _accuracy([base_pred[p] for p in test_pos], [gold[p] for p in test_pos]),
                "tuned_accuracy": _accuracy(preds, [gold[p] for p in test_pos])})
    finally:
        if loaded is None:
            base.close()
        if db is not store:
            db.close()
    result = KFoldResult(out, k, info["task"], gold, base_pred, tuned_pred, fold_rows, list(info["labels"]))
    counts = {lab: gold.count(lab) for lab in set(gold)}
    rare = sorted(lab for lab, c in counts.items() if c < k)
    if rare:
        result.notes.append(f"labels with fewer rows than folds ({', '.join(rare)}) are missing from some "
                            "folds")
    (out / "kfold.json").write_text(json.dumps(
        {**result.summary(), "data": training.source, "model": model, "method": method,
         "settings": s.to_dict()}, indent=2), encoding="utf-8")
    return result


def _accuracy(pred: list[str], gold: list[str]) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(gold, pred)) if gold else 0.0
