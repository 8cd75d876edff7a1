"""``llmlab tune``: train a LoRA adapter on a chat, prompt/completion or labelled file.

``llmlab tune DATA ...`` is short for ``llmlab tune train DATA ...``; ``llmlab tune merge`` and
``llmlab tune export`` (in ``tune_export_cmd``) turn an adapter into a standalone model or a GGUF.

    llmlab tune film.tsv -m hf/smollm2 --out adapters/film            # sentiment, eval's default prompt
    llmlab tune chats.jsonl -m hf/smollm2 --out adapters/chat --epochs 2
    llmlab prompt -m hf/smollm2+adapters/film "..."                   # the adapter, in any command
    llmlab eval film.tsv -m hf/smollm2+adapters/film --method generate

The run is stored (``llmlab runs``; ``llmlab runs show ID``); Ctrl-C or a kill keeps the last
checkpoint in ``--out`` and the same command resumes from it; ``--fresh`` starts over. torch and peft
are imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from .eval_cmd import _pairs, _split
from .main import app, err


class _TrainByDefault(TyperGroup):
    """A group whose first argument, when it is not one of its commands, is the data of ``train``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["train", *args]
        return super().parse_args(ctx, args)


tune_app = typer.Typer(cls=_TrainByDefault, no_args_is_help=True,
                       help="Train a LoRA adapter (llmlab tune DATA ...), merge it, export it to GGUF.")
app.add_typer(tune_app, name="tune")


@tune_app.command("train")
def tune_command(
    data: Annotated[Path, typer.Argument(
        help="chat JSONL (messages), prompt/completion JSONL, or a labelled .csv/.tsv/.jsonl/.parquet",
        show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="the adapter folder (made if missing)")],
    model: Annotated[str, typer.Option("--model", "-m", help="the hf/ base model")] = "hf/smollm2",
    task: Annotated[str | None, typer.Option(
        "--task", "-T", help="for a labelled file: built-in task or task .yaml (default sentiment, as eval)")]
    = None,
    strategy: Annotated[str | None, typer.Option(
        "--strategy", "-s", help="the task's prompt to train (default: the task's default, as eval)")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="comma-separated label set")] = None,
    text_col: Annotated[str | None, typer.Option("--text-col", help="column with the text")] = None,
    label_col: Annotated[str | None, typer.Option("--label-col", help="column with the gold label")] = None,
    id_col: Annotated[str | None, typer.Option("--id-col", help="column with item ids")] = None,
    label_map: Annotated[list[str] | None, typer.Option(
        "--label-map", help="VALUE=LABEL renaming of gold labels (repeatable)")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="passes over the training rows")] = 4,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="conversations per step")] = 8,
    lr: Annotated[float, typer.Option("--lr", help="peak learning rate (AdamW)")] = 1e-3,
    rank: Annotated[int, typer.Option("--rank", "-r", help="LoRA rank")] = 8,
    alpha: Annotated[int, typer.Option("--alpha", help="LoRA alpha (scale = alpha / rank)")] = 16,
    dropout: Annotated[float, typer.Option("--dropout", help="LoRA dropout")] = 0.05,
    targets: Annotated[str, typer.Option("--targets", help="comma-separated modules LoRA adapts")]
    = "q_proj,k_proj,v_proj,o_proj",
    max_length: Annotated[int, typer.Option("--max-length", help="longest conversation, in tokens")] = 512,
    held_out: Annotated[float, typer.Option(
        "--held-out", help="fraction kept back for the held-out loss and early stopping (0 = none)")] = 0.2,
    patience: Annotated[int, typer.Option(
        "--patience", help="epochs without a better held-out loss before stopping (0 = never)")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="split, LoRA init, order, dropout: same seed, same run")]
    = 0,
    save_every: Annotated[int, typer.Option("--save-every", help="steps between checkpoints")] = 5,
    fresh: Annotated[bool, typer.Option("--fresh", help="start over instead of resuming")] = False,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads (default: every core)")]
    = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show the progress bar")] = True,
    prove_it: Annotated[bool, typer.Option(
        "--prove/--no-prove", help="afterwards: base vs tuned on the held-out rows, the forgetting task "
        "and generic prompts")] = True,
    method: Annotated[str, typer.Option(
        "--method", help="eval method for the before/after check (generate asks what was trained)")]
    = "generate",
    forgetting_data: Annotated[Path | None, typer.Option(
        "--forgetting-data", help="a labelled file of a task NOT trained on, evaluated before and after")]
    = None,
    forgetting_task: Annotated[str, typer.Option(
        "--forgetting-task", help="its task (built-in or .yaml)")] = "topic",
    kfold_k: Annotated[int | None, typer.Option(
        "--kfold", help="train K adapters (OUT/fold-i), test each on its own fold: cross-validated accuracy")]
    = None,
):
    """Train a LoRA adapter (peft) with the loss on the assistant's tokens; load it as hf/BASE+OUT.

    Afterwards base and tuned model are compared on the held-out rows (accuracy with 95% intervals,
    McNemar), on --forgetting-data, and by their KL divergence on generic prompts.
    """
    from ..models.registry import load_options
    from ..tune import Settings, tune

    settings = Settings(rank=rank, alpha=alpha, dropout=dropout,
                        targets=tuple(t.strip() for t in targets.split(",") if t.strip()), epochs=epochs,
                        batch_size=batch_size, lr=lr, max_length=max_length, held_out=held_out,
                        patience=patience, seed=seed, save_every=save_every)
    read = dict(task=task, strategy=strategy, labels=_split(labels),
                columns={"text": text_col, "label": label_col, "id": id_col}, label_map=_pairs(label_map))
    options = load_options(threads=threads)
    if kfold_k is not None:
        from ..tune.kfold import kfold

        try:
            cv = kfold(data, model, out, kfold_k, **read, settings=settings, method=method, fresh=fresh,
                       progress=progress, model_options=options)
        except KeyboardInterrupt:
            err(f"interrupted: finished folds are stored; run the same command again to resume ({out})")
            raise typer.Exit(130) from None
        cv.print()
        err(f"{kfold_k} adapters in {out}/fold-1 .. fold-{kfold_k}; figures in {out}/kfold.json")
        return
    try:
        result = tune(data, model, out, **read, settings=settings, fresh=fresh, progress=progress,
                      model_options=options, keep_loaded=prove_it)
    except KeyboardInterrupt as exc:
        err(f"interrupted: the last checkpoint is in {out}/checkpoint; run the same command again to "
            f"resume{_where(exc)}")
        raise typer.Exit(130) from None
    result.print()
    for note in result.notes:
        err(note)
    if result.resumed_at:
        err(f"resumed from step {result.resumed_at}")
    s = result.summary
    rate = f"{s['steps_per_second']:.2f} steps/s, {s['tokens_per_second']:.0f} tokens/s" \
        if s.get("steps_per_second") else "nothing left to train"
    err(f"adapter in {result.out} ({rate}); curve.csv and curve.png beside it")
    err(f"use it as -m {model}+{out}; stored as run {result.run_id} (`llmlab runs show {result.run_id}`)")
    if prove_it:
        from ..tune.proof import prove

        forgetting = {"data": forgetting_data, "task": forgetting_task} if forgetting_data else None
        try:
            prove(result, base=result.base, method=method, forgetting=forgetting, progress=progress,
                  model_options=options).print()
        finally:
            result.base.close()


def _where(exc) -> str:
    run_id = getattr(exc, "run_id", None)
    return f" (run {run_id}, {exc.done} of {exc.planned} epochs stored)" if run_id is not None else ""
