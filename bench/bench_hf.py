"""Decode speed of llmlab's transformers backend against raw ``model.generate``, in one process.

Both run the bundled SmolLM2 GGUF (dequantized by transformers) on the same token ids, greedy, for
exactly the same number of new tokens: the prompt counts on for longer than that, and the reference
also gets ``min_new_tokens`` so neither can stop early. Decode tokens/s is measured the same way for
both, from the first generated token to the last, so the prompt (prefill) is left out. The runs
alternate after a warm-up and the median of each is reported, which keeps a busy machine's noise
from landing on one side only.

    HF_HUB_OFFLINE=1 python bench/bench_hf.py [--tokens 256] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

PROMPT = "Count from 1 to 1000: 1, 2, 3,"


class Timestamps:
    """A transformers streamer that only notes when each new token arrives."""

    def __init__(self):
        self.times: list[float] = []
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() hands the streamer the prompt first
            self.prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


@dataclass
class Run:
    tokens: int
    ttft: float
    stamps: list[float]  # when each generated token (llmlab: each streamed piece) arrived

    @property
    def decode_tps(self) -> float:
        """Tokens after the first / time after the first, as llmlab's Timings.decode_tps."""
        return (self.tokens - 1) / (self.stamps[-1] - self.stamps[0])

    @property
    def steps(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]


def run_llmlab(model, tokens: int) -> Run:
    """Streams through llmlab's Response, the path a user takes, noting when each piece arrives."""
    response = model.prompt(PROMPT, max_new_tokens=tokens, temperature=0)
    start = time.perf_counter()
    stamps = [time.perf_counter() for _ in response]
    return Run(response.usage.completion_tokens, stamps[0] - start, stamps)


def run_raw(model, tokens: int) -> Run:
    """The same generation through ``model.generate`` directly."""
    import torch
    from transformers import GenerationConfig

    ids = torch.tensor([model.encode(PROMPT)])
    eos = sorted(model._eog)
    config = GenerationConfig(do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens,
                              eos_token_id=eos, pad_token_id=eos[0])
    stamps = Timestamps()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.model.generate(ids, generation_config=config, streamer=stamps)
    return Run(out.shape[1] - ids.shape[1], stamps.times[0] - start, stamps.times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the backend's)")
    args = parser.parse_args()

    import torch
    import transformers

    from llmlab import load_model

    start = time.perf_counter()
    model = load_model("hf/smollm2", log=False, n_threads=args.threads)
    load_s = time.perf_counter() - start

    run_llmlab(model, 16)  # warm-up: first-call allocations and kernel selection
    run_raw(model, 16)
    runs: dict[str, list[Run]] = {"llmlab": [], "raw": []}
    for _ in range(args.repeats):
        runs["llmlab"].append(run_llmlab(model, args.tokens))
        runs["raw"].append(run_raw(model, args.tokens))

    counts = {r.tokens for rs in runs.values() for r in rs}
    pieces = {len(r.stamps) for rs in runs.values() for r in rs}
    if counts != {args.tokens} or pieces != {args.tokens}:
        print(f"token counts {sorted(counts)} / pieces {sorted(pieces)} differ from {args.tokens}: "
              "the comparison is void", file=sys.stderr)
        return 1

    def summary(rs: list[Run]) -> tuple[float, float, float]:
        # per-token steps pooled over all runs: their median shrugs off bursts of load from other
        # processes, which a whole-run average does not on a shared machine
        step = statistics.median(s for r in rs for s in r.steps)
        return (statistics.median(r.ttft for r in rs), statistics.median(r.decode_tps for r in rs),
                1 / step)

    stats = {k: summary(v) for k, v in runs.items()}
    print(f"SmolLM2-135M-Instruct Q4_1 GGUF, dequantized to float32 by transformers "
          f"{transformers.__version__}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"load average {os.getloadavg()[0]:.1f}; model load {load_s:.1f} s")
    print(f"greedy, {args.tokens} new tokens, {args.repeats} alternating runs each after a warm-up\n")
    print("| run | new tokens | time to first token (s) | decode tok/s, median run | "
          "decode tok/s, median step | each run (tok/s) |")
    print("|---|---:|---:|---:|---:|---|")
    names = {"llmlab": "llmlab `hf/smollm2` (`Model.prompt`, own decode loop)",
             "raw": "transformers `model.generate`"}
    for key, name in names.items():
        ttft, run_tps, step_tps = stats[key]
        each = ", ".join(f"{r.decode_tps:.1f}" for r in runs[key])
        print(f"| {name} | {args.tokens} | {ttft:.3f} | {run_tps:.1f} | {step_tps:.1f} | {each} |")
    by_step = stats["llmlab"][2] / stats["raw"][2]
    by_run = stats["llmlab"][1] / stats["raw"][1]
    print(f"\nratio llmlab / raw decode tok/s: {by_step:.3f} by median step, {by_run:.3f} by median run "
          "(target >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
