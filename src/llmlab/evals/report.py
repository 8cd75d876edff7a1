"""What an evaluation returns: the comparison table, per-system reports, pairwise tests, predictions.

``EvalResult`` holds the predictions as a DataFrame (one row per item per system, with the raw model
output), one scikit-learn report per system, the comparison table (accuracy and macro-F1 with 95%
bootstrap intervals, unparseable count, examples/s), exact McNemar tests between every pair of
systems, with ``--repeats`` the spread across repeats, and each system's tokens, CPU time and
estimated cost (``llmlab.cost``, at the price table's current prices). ``save(dir)`` writes predictions.csv,
report.json, report.md and confusion.png; ``print()`` shows it in the terminal with rich.

What it gives up: the PNG draws every system's confusion matrix in one grid, which gets crowded past
a dozen systems (report.json has them all as numbers). Its tables are ``llmlab.runs.Table``s: the
same model renders the terminal, markdown (one escaping rule for every report) and CSV.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from ..runs.table import Column, Table
from . import metrics
from .baseline import NAME as BASELINE
from .runner import SystemRun

TABLE_COLUMNS = ["system", "model", "strategy", "method", "n", "accuracy", "accuracy_low",
                 "accuracy_high", "macro_f1", "macro_f1_low", "macro_f1_high", "weighted_f1",
                 "unparsed", "examples_per_s", "settings", "input_tokens", "output_tokens", "cpu_s",
                 "cost_usd"]


def describe_settings(settings: dict | None) -> str:
    """A method's settings in a few words: ``greedy, max 10 tokens``, ``temperature 0.8, seed 3, ...``."""
    gen = (settings or {}).get("generation")
    if not gen:
        return ""
    if not gen.get("temperature"):
        words = ["greedy"]
    else:
        words = [f"temperature {gen['temperature']:g}", f"top-k {gen.get('top_k')}",
                 f"top-p {gen.get('top_p')}"]
        words.append(f"seed {gen['seed']}" if gen.get("seed") is not None else "unseeded")
    return ", ".join(words + [f"max {gen.get('max_new_tokens')} tokens"])


class EvalResult:
    def __init__(self, dataset, task, runs: list[SystemRun], notes: list[str] | None = None):
        self.dataset, self.task, self.runs = dataset, task, runs
        self.notes = list(notes or []) + list(dataset.notes)
        gold = list(dataset.frame["gold"])
        labels = list(task.labels)
        self.metrics = {r.system.name: metrics.classification(gold, [i["pred"] for i in r.items], labels)
                        for r in runs}
        self.correct = {r.system.name: [i["pred"] == g for i, g in zip(r.items, gold, strict=True)]
                        for r in runs}
        self.reopened = False  # re-opened from the store: its cost is at today's prices
        self._cost = None

    @property
    def cost(self) -> tuple:
        """Tokens, CPU time and estimated cost per system: (table, notes, label -> figures)."""
        if self._cost is None:
            from ..cost import report

            self._cost = report([(r.system.name, r.meta.get("usage")) for r in self.runs],
                                reopened=self.reopened)
        return self._cost

    # --- tables ------------------------------------------------------------------------------------

    @property
    def table(self):
        """One row per system: accuracy and macro-F1 with 95% CIs, unparsed, examples/s."""
        import pandas as pd

        rows = []
        spent = self.cost[2]
        for r in self.runs:
            m = self.metrics[r.system.name]
            seconds = sum(i["seconds"] or 0 for i in r.items)
            use = spent.get(r.system.name, {})
            rows.append({
                "system": r.system.name, "model": r.system.model, "strategy": r.system.strategy,
                "method": r.system.method, "n": m["n"], "accuracy": m["accuracy"],
                "accuracy_low": m["accuracy_ci"][0], "accuracy_high": m["accuracy_ci"][1],
                "macro_f1": m["macro_f1"], "macro_f1_low": m["macro_f1_ci"][0],
                "macro_f1_high": m["macro_f1_ci"][1], "weighted_f1": m["weighted_f1"],
                "unparsed": m["unparsed"], "examples_per_s": len(r.items) / seconds if seconds else None,
                "settings": describe_settings(r.meta.get("settings")),
                "input_tokens": use.get("input_tokens"), "output_tokens": use.get("output_tokens"),
                "cpu_s": use.get("cpu_s"), "cost_usd": use.get("cost_usd"),
            })
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)

    @property
    def comparisons(self):
        """Exact McNemar test between each pair of systems."""
        import pandas as pd

        return pd.DataFrame(metrics.pairwise(self.correct), columns=["a", "b", "only_a", "only_b", "p_value"])

    @property
    def repeats(self):
        """Spread of accuracy and macro-F1 across repeats of the same sampled system."""
        import pandas as pd

        groups = defaultdict(list)
        for r in self.runs:
            if r.system.repeats > 1:
                groups[(r.system.model, r.system.strategy, r.system.method)].append(r.system.name)
        rows = []
        for (model, strategy, method), names in groups.items():
            acc = metrics.spread([self.metrics[n]["accuracy"] for n in names])
            f1 = metrics.spread([self.metrics[n]["macro_f1"] for n in names])
            rows.append({"model": model, "strategy": strategy, "method": method, "repeats": len(names),
                         **{f"accuracy_{k}": v for k, v in acc.items() if k != "n"},
                         **{f"macro_f1_{k}": v for k, v in f1.items() if k != "n"}})
        return pd.DataFrame(rows)

    @property
    def predictions(self):
        """One row per item per system: id, text, gold, pred, raw, correct, method, model, ..."""
        import pandas as pd

        frame = self.dataset.frame
        rows = []
        for r in self.runs:
            for item, (text, gold) in zip(r.items, zip(frame["text"], frame["gold"], strict=True),
                                          strict=True):
                rows.append({"id": item["id"], "text": text, "gold": gold, "pred": item["pred"],
                             "raw": item["raw"], "correct": item["pred"] == gold,
                             "method": r.system.method, "model": r.system.model,
                             "strategy": r.system.strategy, "repeat": r.system.repeat,
                             "system": r.system.name, "seconds": item["seconds"],
                             "input_tokens": item.get("input_tokens"),
                             "output_tokens": item.get("output_tokens"), "cpu_s": item.get("cpu_s"),
                             "settings": describe_settings(r.meta.get("settings")),
                             "scores": json.dumps(item["scores"]) if item["scores"] else ""})
        return pd.DataFrame(rows)

    @property
    def best(self) -> str:
        """Highest accuracy, then macro-F1; on a tie a system that gives the same answers every run
        (not one sampled repeat of several) is the better report."""
        once = {r.system.name: r.system.repeats == 1 for r in self.runs}
        return max(self.metrics, key=lambda n: (self.metrics[n]["accuracy"], self.metrics[n]["macro_f1"],
                                                once.get(n, True)))

    def reading(self) -> str:
        """One paragraph that reads the table: the best system, and whether it (and, when the best is
        the supervised baseline, the best prompted system) differs significantly from each other
        system, by the exact McNemar tests, Bonferroni-corrected for every test in the table."""
        best = self.best
        m = self.metrics[best]
        n = m["n"]
        lo, hi = m["accuracy_ci"]
        words = [f"Best: {best}, accuracy {m['accuracy']:.2f} [{lo:.2f}, {hi:.2f}] and macro-F1 "
                 f"{m['macro_f1']:.2f} on {n} items."]
        tests = list(self.comparisons.itertuples())
        level = 0.05 / len(tests) if len(tests) > 1 else 0.05
        prompted = [name for name in self.metrics if not name.startswith(BASELINE)]
        anchors = [best]
        if best.startswith(BASELINE) and prompted:
            anchors.append(max(prompted, key=lambda x: (self.metrics[x]["accuracy"],
                                                        self.metrics[x]["macro_f1"])))
        said = set()
        for anchor in anchors:
            for c in tests:
                if anchor not in (c.a, c.b) or (c.a, c.b) in said:
                    continue
                said.add((c.a, c.b))
                other = c.b if c.a == anchor else c.a
                mine, theirs = (c.only_a, c.only_b) if c.a == anchor else (c.only_b, c.only_a)
                verdict = "significantly different" if c.p_value < level else "not significantly different"
                words.append(f"{anchor} ({self.metrics[anchor]['accuracy']:.2f}) against {other} "
                             f"({self.metrics[other]['accuracy']:.2f}): {mine} items only the first got "
                             f"right and {theirs} only the second, p = {c.p_value:.2g}, {verdict}.")
        if len(tests) > 1:
            words.append(f"(With {len(tests)} tests, a difference counts at p < {level:.3g}, Bonferroni.)")
        if best.startswith(BASELINE):
            words.append("The best system is the supervised baseline, trained on the other folds of "
                         "these labels; a prompt sees at most the task's few worked examples.")
        half = (hi - lo) / 2
        if half >= 0.005:
            words.append(f"With {n} items the accuracy interval is about ±{half:.2f}: differences "
                         "smaller than that are within noise.")
        return " ".join(words)

    # --- the report --------------------------------------------------------------------------------

    @property
    def report(self) -> dict:
        """Everything as plain JSON-able data (what report.json holds)."""
        return {
            "dataset": {"source": self.dataset.source, "sha256": self.dataset.sha256,
                        "rows": len(self.dataset), "text_column": self.dataset.text_col,
                        "label_column": self.dataset.label_col,
                        "gold_counts": self.dataset.frame["gold"].value_counts().to_dict()},
            "task": {"name": self.task.name, "labels": list(self.task.labels), "source": self.task.source},
            "systems": {r.system.name: {"model": r.system.model, "strategy": r.system.strategy,
                                        "method": r.system.method, "repeat": r.system.repeat,
                                        "run_id": r.run_id, "resumed_items": r.resumed, **r.meta,
                                        **self.metrics[r.system.name]} for r in self.runs},
            "table": _records(self.table),
            "comparisons": _records(self.comparisons),
            "repeats": _records(self.repeats),
            "best": self.best,
            "reading": self.reading(),
            "cost": {"systems": self.cost[2], "notes": self.cost[1]},
            "notes": self.notes,
        }

    def to_markdown(self) -> str:
        t = self.table
        lines = [f"# {self.task.name} on {Path(self.dataset.source).name}", "",
                 f"{len(self.dataset)} items; labels: {', '.join(self.task.labels)}. Intervals are 95% "
                 "bootstrap (BCa); p-values are exact McNemar tests.", ""]
        lines += [*(f"- {n}" for n in self.notes), ""] if self.notes else []
        lines += [self.reading(), ""]
        systems = Table(["system", "accuracy [95% CI]", "macro-F1 [95% CI]", "unparsed", "examples/s"])
        for _, row in t.iterrows():
            systems.add_row(row.system,
                            f"{row.accuracy:.3f} [{row.accuracy_low:.3f}, {row.accuracy_high:.3f}]",
                            f"{row.macro_f1:.3f} [{row.macro_f1_low:.3f}, {row.macro_f1_high:.3f}]",
                            row.unparsed, _num(row.examples_per_s))
        lines.append(systems.to_markdown())
        if len(self.runs) > 1:
            tests = Table(["a", "b", "only a right", "only b right", "p"],
                          [[c.a, c.b, c.only_a, c.only_b, f"{c.p_value:.4g}"]
                           for c in self.comparisons.itertuples()])
            lines += ["", "## Pairwise exact McNemar tests", "", tests.to_markdown()]
        if len(self.repeats):
            spread = Table(["model", "strategy", "method", "repeats", "accuracy mean ± sd [min, max]"],
                           [[r.model, r.strategy, r.method, r.repeats,
                             f"{r.accuracy_mean:.3f} ± {r.accuracy_std:.3f} "
                             f"[{r.accuracy_min:.3f}, {r.accuracy_max:.3f}]"]
                            for r in self.repeats.itertuples()])
            lines += ["", "## Spread across repeats", "", spread.to_markdown()]
        table, notes, _ = self.cost
        lines += ["", "## Tokens and estimated cost", "", table.to_markdown(), "", *(f"- {n}" for n in notes)]
        for name, m in self.metrics.items():
            lines += ["", f"## {name}", "", "```", m["report_text"].rstrip(), "```", "",
                      f"`sklearn.metrics.{m['sklearn_call']}`", "", "Confusion matrix (rows gold, "
                      "columns predicted):", "", "```", _confusion_text(m["confusion"]), "```"]
        return "\n".join(lines) + "\n"

    def save(self, out: str | Path) -> Path:
        """Write predictions.csv, report.json, report.md and confusion.png into ``out``."""
        out = Path(out).expanduser()
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.predictions.to_csv(out / "predictions.csv", index=False)
            (out / "report.json").write_text(json.dumps(self.report, indent=2, default=_json_default))
            (out / "report.md").write_text(self.to_markdown())
            self.plot_confusion(out / "confusion.png")
        except OSError as exc:
            from ..errors import ConfigError

            raise ConfigError(f"could not write the report into {out}: {exc.strerror or exc} "
                              f"({exc.filename or out}); every prediction is stored, so the same command "
                              "with another --out writes it without computing again") from None
        return out

    def plot_confusion(self, path: str | Path) -> None:
        import matplotlib

        matplotlib.use("Agg")  # no display needed; must precede pyplot
        import matplotlib.pyplot as plt
        import numpy as np
        from sklearn.metrics import ConfusionMatrixDisplay

        n = len(self.metrics)
        cols = min(n, 3)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False)
        for ax, (name, m) in zip(axes.flat, self.metrics.items(), strict=False):
            c = m["confusion"]
            matrix = np.asarray(c["matrix"])
            extra = len(c["columns"]) - len(c["rows"])
            # the display wants a square matrix: give the unparsed column an empty gold row, then
            # crop it from view (no item has "unparsed" as its gold label)
            square = np.vstack([matrix, np.zeros((extra, matrix.shape[1]), dtype=matrix.dtype)])
            disp = ConfusionMatrixDisplay(square, display_labels=c["columns"])
            disp.plot(ax=ax, colorbar=False, cmap="Blues", xticks_rotation=45)
            if extra:
                ax.set_ylim(len(c["rows"]) - 0.5, -0.5)
                for text in disp.text_[len(c["rows"]):].flat:
                    text.set_visible(False)
            ax.set_ylabel("gold")
            ax.set_title(f"{name}\naccuracy {m['accuracy']:.2f}", fontsize=9)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def print(self, console=None) -> None:
        """The comparison table, McNemar tests and the best system's report, in the terminal."""
        from rich.console import Console

        console = console or Console()
        number = {r.system.name: i for i, r in enumerate(self.runs, 1)}
        title = f"{self.task.name} on {Path(self.dataset.source).name} ({len(self.dataset)} items)"
        table = Table([Column(col, justify="right" if col[0] in "#aue" else "left")
                       for col in ("#", "model", "strategy", "method", "accuracy [95% CI]",
                                   "macro-F1 [95% CI]", "unparsed", "ex/s")], title=title)
        systems = {r.system.name: r.system for r in self.runs}
        for _, r in self.table.iterrows():
            system = systems[r.system]
            method = r.method + (f" #{system.repeat + 1}" if system.repeats > 1 else "")
            if r.settings and not r.settings.startswith("greedy"):
                method += f" ({r.settings})"
            table.add_row(str(number[r.system]), r.model, r.strategy, method,
                          f"{r.accuracy:.3f} [{r.accuracy_low:.2f}, {r.accuracy_high:.2f}]",
                          f"{r.macro_f1:.3f} [{r.macro_f1_low:.2f}, {r.macro_f1_high:.2f}]",
                          str(r.unparsed), _num(r.examples_per_s))
        console.print(table.to_rich())
        if len(self.runs) > 1:
            tests = Table([Column(col, justify="right")
                           for col in ("a", "b", "only a right", "only b right", "p")],
                          title="exact McNemar tests (systems by #)")
            for c in self.comparisons.itertuples():
                tests.add_row(f"#{number[c.a]}", f"#{number[c.b]}", str(c.only_a), str(c.only_b),
                              f"{c.p_value:.3g}")
            console.print(tests.to_rich())
        if len(self.repeats):
            spread = Table([Column(col, justify="right" if col == "repeats" else "left")
                            for col in ("model", "strategy", "method", "repeats", "accuracy", "macro-F1")],
                           title="spread across sampled repeats (mean ± standard deviation, min-max)")
            for x in self.repeats.itertuples():
                spread.add_row(x.model, x.strategy, x.method, str(x.repeats),
                               f"{x.accuracy_mean:.3f} ± {x.accuracy_std:.3f} ({x.accuracy_min:.2f}-"
                               f"{x.accuracy_max:.2f})",
                               f"{x.macro_f1_mean:.3f} ± {x.macro_f1_std:.3f} ({x.macro_f1_min:.2f}-"
                               f"{x.macro_f1_max:.2f})")
            console.print(spread.to_rich())
        table, notes, _ = self.cost
        console.print(replace(table, rows=[[f"#{n}", *row[1:]] for n, row in enumerate(table.rows, 1)],
                              columns=["#", *table.columns[1:]]).to_rich())
        for note in notes:
            console.print(note, style="dim", markup=False)
        best = self.metrics[self.best]
        console.print(f"\nbest: {self.best}\n{best['report_text']}")
        console.print(_confusion_text(best["confusion"]), markup=False)
        for note in self.notes:
            console.print(f"note: {note}", markup=False)
        console.print(f"\n{self.reading()}", markup=False)


def _confusion_text(c: dict) -> str:
    import pandas as pd

    frame = pd.DataFrame(c["matrix"], index=[f"gold {r}" for r in c["rows"]], columns=c["columns"])
    return frame.to_string()


def _records(frame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def _num(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
