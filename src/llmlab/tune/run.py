"""``llmlab tune`` as a run like any other: epochs are its units, stored as they finish, resumable.

    >>> from llmlab.tune import tune
    >>> result = tune("film.tsv", "hf/smollm2", "adapters/film")   # doctest: +SKIP
    >>> result.summary["val_loss"], result.out

A run is one kind ("tune") on the one runner (``runs.execute``): each epoch is a unit whose result
holds its per-step losses, held-out loss and timings, so ``llmlab runs show ID`` redraws the table
and the curve needs nothing but the store. The weights live in ``OUT``: the best adapter by held-out
loss (``adapter_config.json``, ``adapter_model.safetensors``), ``llmlab_adapter.json`` (the base model
and its file's sha256, the data, the settings: what ``hf/BASE+OUT`` checks), ``curve.csv`` and
``curve.png``, and while training ``checkpoint/`` (removed when the run finishes). The same command
again resumes from the checkpoint, mid-epoch; ``fresh`` starts over; an ``OUT`` holding another run's
checkpoint is refused rather than overwritten.

What it gives up: early stopping is judged once per epoch; the units left after it are stored as
skipped, so the run still reads as finished.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
from ..runs import RunKind, Unit, fingerprint, model_identity
from ..runs.table import Column, Table, show_tables
from .trainer import CHECKPOINT, Settings, Trainer, checkpoint_fingerprint, import_peft

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "llmlab_adapter.json", "curve.csv",
                 "curve.png", "README.md")


@dataclass
class TuneResult:
    run_id: int | None
    out: Path
    units: list[dict]
    summary: dict
    resumed_at: int = 0       # the optimizer step a resumed run went on from (0: from the start)
    notes: list[str] = field(default_factory=list)
    data: object = None       # the TrainingData it was trained on
    held_out: list[int] = field(default_factory=list)  # positions of the held-out examples in data
    model: str = ""           # the base model's name, as given
    base: object = None       # the loaded base model, when tune(keep_loaded=True) loaded it

    def table(self) -> Table:
        return epochs_table(self.units, self.summary, self.run_id)

    def print(self, console=None) -> None:
        from rich.console import Console

        (console or Console()).print(self.table().to_rich())


class TuneRun(RunKind):
    kind = "tune"

    def __init__(self, trainer: Trainer, identity: dict, header: dict, progress=None):
        self.trainer, self._identity, self._header, self.progress = trainer, identity, header, progress
        self.model, self.subject = header["model"], header["subject"]
        self.label = "tune"
        self.resumed_at = 0

    def identity(self) -> dict:
        return self._identity

    def header(self) -> dict:
        return self._header

    def plan(self) -> list[Unit]:
        return [Unit(f"epoch-{e}", e, e) for e in range(1, self.trainer.s.epochs + 1)]

    def start(self, todo: list[Unit]) -> None:
        t = self.trainer
        t.attach()
        if t.resume():
            self.resumed_at = t.step
        if todo and len(t.epochs) < todo[0].seq - 1:
            raise ConfigError(f"the store has epochs of this run that the checkpoint in {t.out} lacks "
                              "(was it deleted?); start again with --fresh")
        if self.progress is not None and todo:
            self.bar = self.progress.add_task("tune", total=t.total_steps, completed=t.step,
                                              loss="-", val="-")

    def run_unit(self, unit: Unit) -> dict:
        t, epoch = self.trainer, unit.payload
        done = {u["epoch"]: u for u in t.epochs}
        if epoch in done:  # finished before a kill, after its checkpoint and before its unit was stored
            return done[epoch]
        if t.stopped:
            return {"epoch": epoch, "skipped": "early stop"}
        unit_result = t.train_epoch(epoch, self.progress, getattr(self, "bar", None))
        unit_result["losses"] = [h["loss"] for h in t.history if h["epoch"] == epoch]
        return unit_result

    def summarise(self, results: dict[str, dict]) -> dict:
        return summarise(list(results.values()))


def summarise(units: list[dict]) -> dict:
    trained = [u for u in units if "skipped" not in u]
    scored = [u for u in trained if u.get("val_loss") is not None]
    best = min(scored, key=lambda u: u["val_loss"]) if scored else (trained[-1] if trained else {})
    seconds = sum(u.get("seconds", 0) for u in trained)
    steps = sum(u.get("steps", 0) for u in trained)
    tokens = sum(u.get("tokens", 0) for u in trained)
    return {"epochs": len(trained), "best_epoch": best.get("epoch"), "val_loss": best.get("val_loss"),
            "train_loss": trained[-1]["train_loss"] if trained else None,
            "stopped_early": len(trained) < len(units), "steps": steps, "seconds": seconds,
            "steps_per_second": steps / seconds if seconds else None,
            "tokens_per_second": tokens / seconds if seconds else None}


def tune(data, model: str = "hf/smollm2", out: str | Path = "adapter", *, task: str | None = None,
         strategy: str | None = None, labels: list[str] | None = None, columns: dict | None = None,
         label_map: dict | None = None, settings: Settings | None = None, fresh: bool = False,
         progress: bool = True, store="default", loaded=None, model_options: dict | None = None,
         on_step=None, rows: list[int] | None = None, keep_loaded: bool = False) -> TuneResult:
    """Train a LoRA adapter on ``data`` into ``out``; resume a run of the same arguments.

    ``loaded`` is an already loaded ``hf/`` model to train on (it is left as it was); ``store`` is a
    ``Store``, None for none, or "default" for the user's; ``rows`` (positions in the file) trains
    on those examples only, as a cross-validation fold does. ``keep_loaded`` leaves the base model it
    loaded open in ``result.base`` (for ``proof.prove``; the caller closes it).
    """
    from ..config import prepare_out
    from ..models.adapters import ADAPTER_RECORD, base_sha256
    from ..models.registry import load_model, resolve_backend
    from ..runs import execute
    from .data import read_training_data, split
    from .encode import check_lengths, encode

    s = settings or Settings()
    if resolve_backend(model) != "hf":
        raise ConfigError(f"llmlab tune trains hf/ models (transformers), not {model!r}: try -m hf/smollm2")
    _check_settings(s)
    import_peft()  # a missing [tune] extra fails before anything loads
    training = read_training_data(data, task, strategy=strategy, labels=labels, columns=columns,
                                  label_map=label_map)
    positions = list(range(len(training.examples))) if rows is None else sorted(set(rows))
    if positions and not 0 <= positions[0] <= positions[-1] < len(training.examples):
        raise ConfigError(f"rows must be positions in {training.source} (0 to {len(training.examples) - 1})")
    golds = training.golds
    train_pos, val_pos = split(positions, s.held_out, s.seed, training.source,
                               None if golds is None else [golds[i] for i in positions])
    train_ex, val_ex = [training.examples[i] for i in train_pos], [training.examples[i] for i in val_pos]
    out = prepare_out(out).resolve()
    if store == "default":
        from ..store import Store

        store = Store.open()
    m = loaded if loaded is not None else load_model(model, log=False, **(model_options or {}))
    if s.max_length > m.info.context_length:
        raise ConfigError(f"--max-length {s.max_length} is beyond {model}'s context of "
                          f"{m.info.context_length} tokens")
    used = train_ex + val_ex
    encoded = {id(ex): encode(m, ex.messages, last_only=ex.last_only, where=ex.where) for ex in used}
    check_lengths(m, [(ex.where, encoded[id(ex)][0]) for ex in used], s.max_length)
    if not any(any(y != -100 for y in encoded[id(ex)][1]) for ex in train_ex):
        raise DataError(f"{training.source}: no answer tokens to train on")

    identity = {"data_sha256": training.sha256, "format": training.format, "task": training.task,
                "model": model_identity(m, store), "settings": s.to_dict(), "out": str(out)}
    if rows is not None:
        identity["rows"] = positions
    fp = fingerprint(identity)
    held = checkpoint_fingerprint(out) or _adapter_fingerprint(out)
    if fresh:
        shutil.rmtree(out / Path(CHECKPOINT).parent, ignore_errors=True)
        for name in ADAPTER_FILES:
            (out / name).unlink(missing_ok=True)
    elif held is not None and held != fp:
        raise ConfigError(f"{out} holds the adapter or checkpoint of another training run (other data or "
                          "settings); add --fresh to replace it, or choose another --out")

    record = {"base_model": model, "base_name": m.info.name, "base_path": m.info.path,
              "base_sha256": base_sha256(m.info.path), "data": training.source,
              "data_sha256": training.sha256, "format": training.format, "task": training.task,
              "settings": s.to_dict(), "train_rows": len(train_ex), "held_out_rows": len(val_ex),
              "fingerprint": fp}
    (out / ADAPTER_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    subject = training.task["task"] if training.task else Path(training.source).name
    header = {"model": model, "subject": subject,
              "data": training.source, "format": training.format, "out": str(out), "settings": s.to_dict(),
              "train_rows": len(train_ex), "held_out_rows": len(val_ex), "task": training.task}
    trainer = Trainer(m, [encoded[id(ex)] for ex in train_ex], [encoded[id(ex)] for ex in val_ex], s, out,
                      on_step=on_step)
    trainer.fingerprint = fp
    with _progress(progress) as bar:
        kind = TuneRun(trainer, identity, header, bar)
        try:
            outcome = execute(kind, store, fresh=fresh)
        finally:
            trainer.detach()
            if loaded is None and not (keep_loaded and not _failed()):
                m.close()
    units = list(outcome.results.values())
    record.update(run_id=outcome.run_id, best_epoch=outcome.summary["best_epoch"],
                  val_loss=outcome.summary["val_loss"])
    (out / ADAPTER_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    notes = write_curve(out, units)
    shutil.rmtree(out / Path(CHECKPOINT).parent, ignore_errors=True)  # the adapter is the product
    result = TuneResult(outcome.run_id, out, units, outcome.summary, kind.resumed_at, notes, training,
                        val_pos, model)
    if keep_loaded and loaded is None:
        result.base = m
    return result


def _failed() -> bool:
    """Inside a ``finally``: whether an exception is on its way out."""
    import sys

    return sys.exc_info()[0] is not None


def _adapter_fingerprint(out: Path) -> str | None:
    """The fingerprint of the run that wrote the adapter in ``out``, if one is there."""
    from ..models.adapters import ADAPTER_RECORD

    if not (out / "adapter_model.safetensors").is_file():
        return None
    try:
        return json.loads((out / ADAPTER_RECORD).read_text(encoding="utf-8")).get("fingerprint") or "?"
    except (OSError, ValueError):
        return "?"  # an adapter from elsewhere: not ours to overwrite


def _check_settings(s: Settings) -> None:
    from ..checks import whole_number

    for name in ("rank", "alpha", "epochs", "batch_size", "max_length", "save_every"):
        whole_number(f"--{name.replace('_', '-')}", getattr(s, name))
    if not 0 <= s.dropout < 1:
        raise ConfigError(f"--dropout must be in [0, 1), got {s.dropout}")
    if not s.lr > 0:
        raise ConfigError(f"--lr must be > 0, got {s.lr}")
    if s.patience < 0:
        raise ConfigError(f"--patience must be >= 0 (0 = never stop early), got {s.patience}")


def _progress(show: bool):
    from ..runs import progress_bar

    return progress_bar(show, detail="steps  loss {task.fields[loss]}  held-out {task.fields[val]}")


# --- the report and the curve ------------------------------------------------------------------------


def epochs_table(units: list[dict], summary: dict | None, run_id: int | None) -> Table:
    title = f"tune run {run_id}" if run_id is not None else "tune"
    if summary and summary.get("best_epoch"):
        title += f": best epoch {summary['best_epoch']}"
    t = Table(["epoch", Column("train loss", justify="right"), Column("held-out loss", justify="right"),
               Column("steps", justify="right"), Column("tokens/s", justify="right"),
               Column("seconds", justify="right"), ""], title=title, title_justify="left")
    for u in units:
        if "skipped" in u:
            t.add_row(str(u["epoch"]), "", "", "", "", "", u["skipped"])
            continue
        val = u.get("val_loss")
        t.add_row(str(u["epoch"]), f"{u['train_loss']:.4f}", "" if val is None else f"{val:.4f}",
                  str(u["steps"]), f"{u['tokens'] / u['seconds']:.0f}" if u["seconds"] else "",
                  f"{u['seconds']:.1f}",
                  "best" if summary and u["epoch"] == summary.get("best_epoch") else "")
    return t


def write_curve(out: Path, units: list[dict]) -> list[str]:
    """``curve.csv`` (one row per step; the held-out loss on each epoch's last) and ``curve.png``."""
    import csv

    rows, step = [], 0
    for u in units:
        for i, loss in enumerate(u.get("losses") or []):
            step += 1
            last = i == len(u["losses"]) - 1
            rows.append([step, u["epoch"], f"{loss:.6f}", f"{u['val_loss']:.6f}"
                         if last and u.get("val_loss") is not None else ""])
    with open(out / "curve.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", "epoch", "train_loss", "held_out_loss"])
        w.writerows(rows)
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return ["matplotlib is not installed, so curve.png was not drawn (pip install 'llmlab[tune]')"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r[0] for r in rows], [float(r[2]) for r in rows], label="training loss (per step)")
    val = [(r[0], float(r[3])) for r in rows if r[3]]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="held-out loss (per epoch)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per answer token")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=100)
    plt.close(fig)
    return []


def show_runs(store, rows: list[dict], fmt: str, console) -> str | None:
    """Stored tune runs re-opened (``llmlab runs show ID``): the epochs table, from the store."""
    tables = []
    for run in rows:
        units = list(store.units(run["id"]).values())
        tables.append(epochs_table(units, run.get("summary") or (summarise(units) if units else None),
                                   run["id"]))
    return show_tables(tables, fmt, console)
