"""LoRA supervised fine-tuning as a plain torch loop: batches, AdamW, held-out loss, checkpoints.

Why a plain loop and not trl's ``SFTTrainer``: the data is already token ids with an assistant-only
label mask (``encode.py``; SmolLM2's template lacks the markers trl's ``assistant_only_loss`` needs),
so what trl would add is its Trainer machinery -- accelerate, a dataset library, callbacks, its own
checkpoint layout -- none of which a 100-row CPU run needs, and all of which stands between llmlab
and the things it must own: a checkpoint that resumes mid-epoch to the same weights (the data order
is a function of seed and epoch, the dropout RNG and the optimizer are saved), its store units, its
progress bar and its one-line errors. peft does the LoRA (``get_peft_model``, its state dicts and
``save_pretrained``); the loop is forty lines. ``bench/bench_tune.py`` checks it keeps up with the
naive peft + transformers loop on the same batches.

Checkpoints (``OUT/checkpoint/state.pt``) are written every ``save_every`` optimizer steps and at
each epoch's end, replacing the file atomically, so a kill mid-save leaves the previous one. The
best adapter by held-out loss is written to ``OUT`` itself whenever the held-out loss improves.

What it gives up: no gradient accumulation, no mixed precision, no packing of short conversations;
batches are padded to their longest conversation.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError, MissingDependencyError
from .encode import IGNORE

CHECKPOINT = "checkpoint/state.pt"


@dataclass(frozen=True)
class Settings:
    """What shapes a training run (part of its fingerprint); defaults sized for 100 rows on 2 cores."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    epochs: int = 4
    batch_size: int = 8
    lr: float = 1e-3
    warmup: float = 0.1          # fraction of the steps over which the rate rises linearly
    max_length: int = 512
    held_out: float = 0.2
    patience: int = 2            # epochs without a better held-out loss before stopping
    seed: int = 0
    save_every: int = 5          # optimizer steps between checkpoints

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d


def import_peft():
    try:
        import peft
    except ImportError as exc:
        raise MissingDependencyError("peft", "tune") from exc
    return peft


class Trainer:
    """Trains a LoRA adapter on a loaded ``hf/`` model; ``attach()`` first, ``detach()`` always after.

    ``train`` and ``held_out`` are lists of (input ids, labels). ``on_step(step, loss)`` is called
    after each optimizer step (the tests interrupt a run with it).
    """

    def __init__(self, model, train: list, held_out: list, settings: Settings, out: Path, on_step=None):
        import torch

        self.torch = torch
        self.model, self.train, self.held_out, self.s, self.out = model, train, held_out, settings, Path(out)
        self.on_step = on_step
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.steps_per_epoch = math.ceil(len(train) / settings.batch_size)
        self.total_steps = self.steps_per_epoch * settings.epochs
        self.pad = model.tokenizer.pad_token_id
        if self.pad is None:
            self.pad = model.tokenizer.eos_token_id or 0
        # the state a checkpoint holds besides weights and optimizer
        self.step = 0
        self.history: list[dict] = []   # one row per optimizer step: step, epoch, loss, tokens
        self.epochs: list[dict] = []    # one row per finished epoch: the run's units
        self.best: float | None = None
        self.stale = 0                  # epochs since the best held-out loss

    # --- LoRA on and off ---------------------------------------------------------------------------

    def attach(self) -> None:
        peft = import_peft()
        torch = self.torch
        torch.manual_seed(self.s.seed)  # LoRA's A matrices are drawn from torch's RNG
        config = peft.LoraConfig(r=self.s.rank, lora_alpha=self.s.alpha, lora_dropout=self.s.dropout,
                                 target_modules=list(self.s.targets), task_type="CAUSAL_LM")
        try:
            with _quiet_peft():
                self.peft = peft.get_peft_model(self.model.model, config)
        except ValueError as exc:  # a target module the model does not have
            raise ConfigError(f"LoRA could not be applied: {exc}") from exc
        self.peft.to(self.device)
        params = [p for p in self.peft.parameters() if p.requires_grad]
        self.optim = torch.optim.AdamW(params, lr=self.s.lr, weight_decay=0.0)
        warm = max(1, round(self.s.warmup * self.total_steps))

        def rate(step: int) -> float:  # linear warm-up, then linear decay to a tenth
            if step < warm:
                return (step + 1) / warm
            return max(0.1, 1 - 0.9 * (step - warm) / max(1, self.total_steps - warm))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, rate)

    def detach(self) -> None:
        """Take LoRA out again, leaving ``model`` the base model it was (on the CPU)."""
        peft = getattr(self, "peft", None)
        if peft is not None:
            self.model.model = peft.unload().to("cpu").eval()
            self.peft = None

    # --- batches -----------------------------------------------------------------------------------

    def order(self, epoch: int) -> list[int]:
        """The training rows' order in ``epoch`` (from 1): a function of seed and epoch alone."""
        order = list(range(len(self.train)))
        random.Random(self.s.seed * 100_003 + epoch).shuffle(order)
        return order

    def batch(self, rows: list[tuple[list[int], list[int]]]):
        torch = self.torch
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (x, y) in enumerate(rows):
            ids[i, : len(x)] = torch.tensor(x)
            labels[i, : len(y)] = torch.tensor(y)
            mask[i, : len(x)] = 1
        return ids.to(self.device), labels.to(self.device), mask.to(self.device)

    def loss(self, rows) -> tuple:
        """(summed loss over the answer tokens, how many there are) for a batch."""
        torch = self.torch
        ids, labels, mask = self.batch(rows)
        logits = self.peft(input_ids=ids, attention_mask=mask).logits
        # shift the labels, not the logits: a slice of the logits would copy all of them (batch x
        # length x 49k floats), as transformers' own loss avoids too
        target = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE)
        total = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]).float(),
                                                  target.reshape(-1), ignore_index=IGNORE, reduction="sum")
        return total, int((target != IGNORE).sum())

    # --- training ----------------------------------------------------------------------------------

    def train_epoch(self, epoch: int, progress=None, bar=None) -> dict:
        """Train ``epoch`` from where the checkpoint left it; the epoch's unit (losses, timings)."""
        torch = self.torch
        s = self.s
        done_in_epoch = self.step - (epoch - 1) * self.steps_per_epoch
        order = self.order(epoch)
        start = time.perf_counter()
        self.peft.train()
        for b in range(done_in_epoch, self.steps_per_epoch):
            rows = [self.train[i] for i in order[b * s.batch_size:(b + 1) * s.batch_size]]
            with _memory_errors(s, max(len(x) for x, _ in rows)):
                total, count = self.loss(rows)
                loss = total / max(count, 1)
                self.optim.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.peft.parameters() if p.requires_grad], 1.0)
                self.optim.step()
                self.sched.step()
            self.step += 1
            value = float(loss.detach())
            self.history.append({"step": self.step, "epoch": epoch, "loss": value,
                                 "tokens": sum(len(x) for x, _ in rows)})
            if progress is not None:
                progress.update(bar, advance=1, loss=f"{value:.3f}")
            if self.step % s.save_every == 0 and b + 1 < self.steps_per_epoch:
                self.save()
            if self.on_step is not None:
                self.on_step(self.step, value)
        mine = [h for h in self.history if h["epoch"] == epoch]
        train_loss = sum(h["loss"] for h in mine) / max(1, len(mine))
        val = self.evaluate() if self.held_out else None
        improved = val is not None and (self.best is None or val < self.best)
        if improved or (val is None and epoch == s.epochs):
            self.best = val
            self.stale = 0
            self.save_adapter()
        elif val is not None:
            self.stale += 1
        unit = {"epoch": epoch, "train_loss": train_loss, "val_loss": val, "best": improved,
                "steps": len(mine), "tokens": sum(h["tokens"] for h in mine),
                "seconds": time.perf_counter() - start, "lr": self.sched.get_last_lr()[0]}
        self.epochs.append(unit)
        if progress is not None and val is not None:
            progress.update(bar, val=f"{val:.3f}")
        self.save()
        return unit

    @property
    def stopped(self) -> bool:
        """Early stopping: ``patience`` epochs in a row without a better held-out loss."""
        return bool(self.held_out) and self.s.patience > 0 and self.stale >= self.s.patience

    def evaluate(self, rows: list | None = None) -> float:
        """Mean loss per answer token over ``rows`` (the held-out conversations by default)."""
        torch = self.torch
        rows = self.held_out if rows is None else rows
        self.peft.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(rows), self.s.batch_size):
                chunk = rows[i:i + self.s.batch_size]
                with _memory_errors(self.s, max(len(x) for x, _ in chunk)):
                    t, c = self.loss(chunk)
                total, count = total + float(t), count + c
        self.peft.train()
        return total / max(count, 1)

    # --- saving and resuming -----------------------------------------------------------------------

    def save_adapter(self) -> None:
        with _quiet_peft():
            self.peft.save_pretrained(str(self.out))

    def save(self) -> None:
        torch = self.torch
        peft = import_peft()
        with _quiet_peft():
            lora = peft.get_peft_model_state_dict(self.peft)
        state = {"lora": lora, "optim": self.optim.state_dict(),
                 "sched": self.sched.state_dict(), "rng": torch.get_rng_state(), "step": self.step,
                 "history": self.history, "epochs": self.epochs, "best": self.best, "stale": self.stale,
                 "fingerprint": self.fingerprint}
        path = self.out / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: a kill mid-save leaves the previous checkpoint

    def resume(self) -> bool:
        """Load the checkpoint in ``out`` if there is one; whether there was."""
        torch = self.torch
        path = self.out / CHECKPOINT
        if not path.is_file():
            return False
        peft = import_peft()
        state = torch.load(path, map_location=self.device, weights_only=True)
        peft.set_peft_model_state_dict(self.peft, state["lora"])
        self.optim.load_state_dict(state["optim"])
        self.sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"].cpu())
        self.step, self.history, self.epochs = state["step"], state["history"], state["epochs"]
        self.best, self.stale = state["best"], state["stale"]
        return True

    fingerprint: str = ""


def checkpoint_fingerprint(out: Path) -> str | None:
    """The fingerprint of the run whose checkpoint is in ``out``, or None."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        return None
    import torch

    return torch.load(path, map_location="cpu", weights_only=True).get("fingerprint")


@contextlib.contextmanager
def _quiet_peft():
    """peft's warnings that say nothing to a user: on every save, that a GGUF base has no config.json
    to compare the vocabulary with; on wrapping, transformers' deprecation of a name peft calls."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not find a config file")
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


class _memory_errors:
    """Running out of memory becomes a one-line error naming the setting to lower."""

    def __init__(self, settings: Settings, longest: int):
        self.s, self.longest = settings, longest

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None:
            return False
        import torch

        oom = isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or (
            isinstance(exc, RuntimeError) and ("out of memory" in str(exc).lower()
                                               or "can't allocate memory" in str(exc).lower()))
        if oom:
            raise ConfigError(
                f"ran out of memory on a batch of {self.s.batch_size} x {self.longest} tokens: lower "
                f"--batch-size (now {self.s.batch_size}) or --max-length (now {self.s.max_length}); "
                "the last checkpoint is kept and the same command resumes") from exc
        return False
