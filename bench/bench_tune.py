"""Training throughput of ``llmlab tune``'s loop against a plain peft + transformers loop, in one process.

Both train the same LoRA (r=8 on q/k/v/o of the bundled SmolLM2, dequantized by transformers) on the
same batches: the film file's rows as ``llmlab tune`` encodes them (eval's zero-shot sentiment prompt
and the label), batch 8, padded to the longest row. The reference is the loop a peft tutorial
writes: ``model(input_ids, attention_mask, labels)`` with transformers' own loss, AdamW,
``zero_grad``; llmlab's adds its own token-summed loss, gradient clipping, the scheduler and the
bookkeeping. The two alternate, a few steps at a time after a warm-up, and the median step time of
each is reported, so a busy machine's noise lands on both.

    HF_HUB_OFFLINE=1 python bench/bench_tune.py [--steps 6] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

FILM = Path(__file__).resolve().parents[2] / "shared" / "data" / "lesson" / "sentiment_film_data.tsv"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6, help="steps per round, each side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data", default=str(FILM))
    args = ap.parse_args()

    import peft
    import torch

    from llmlab.models.registry import load_model
    from llmlab.tune.data import read_training_data
    from llmlab.tune.encode import encode
    from llmlab.tune.trainer import Settings, Trainer

    model = load_model("hf/smollm2", log=False, n_threads=args.threads)
    rows = [encode(model, ex.messages, last_only=ex.last_only)
            for ex in read_training_data(args.data).examples]
    s = Settings(epochs=100)
    ours = Trainer(model, rows, [], s, Path(tempfile.mkdtemp()))
    ours.attach()
    batches = [rows[i:i + s.batch_size] for i in range(0, len(rows) - s.batch_size + 1, s.batch_size)]
    tokens = statistics.mean(sum(len(x) for x, _ in b) for b in batches)
    width = statistics.mean(max(len(x) for x, _ in b) for b in batches)

    def our_step(rows):
        total, count = ours.loss(rows)
        loss = total / count
        ours.optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in ours.peft.parameters() if p.requires_grad], 1.0)
        ours.optim.step()
        ours.sched.step()

    # the reference: its own LoRA on the same base (ours is taken off while it runs)
    torch.manual_seed(0)
    ref_optim = None

    def plain_step(rows):
        ids, labels, mask = ours.batch(rows)  # the same padded tensors
        loss = ref(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        ref_optim.step()
        ref_optim.zero_grad()

    times = {"llmlab": [], "plain": []}
    for r in range(args.rounds + 1):  # round 0 is the warm-up
        for name in ("llmlab", "plain"):
            if name == "plain":
                ours.peft.unload()
                cfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM",
                                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
                ref = peft.get_peft_model(model.model, cfg)
                ref.train()
                ref_optim = torch.optim.AdamW([p for p in ref.parameters() if p.requires_grad], lr=1e-3)
                step = plain_step
            else:
                if r:
                    model.model = ref.unload()
                    ours.attach()
                ours.peft.train()
                step = our_step
            for i in range(args.steps):
                batch = batches[(r * args.steps + i) % len(batches)]
                start = time.perf_counter()
                step(batch)
                if r:
                    times[name].append(time.perf_counter() - start)
    print(f"{len(rows)} rows, batch {s.batch_size}: {tokens:.0f} real tokens per batch, "
          f"padded to {width:.0f} per row")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(f"{name:7s} {1 / t:.3f} steps/s  {tokens / t:.0f} tokens/s  "
              f"(median of {len(times[name])} steps)")
    print(f"llmlab / plain: {med['plain'] / med['llmlab']:.2f}x")


if __name__ == "__main__":
    main()
