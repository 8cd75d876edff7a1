"""What llama.cpp's extra buffer types (repacked / AMX weight layouts) cost or gain on this machine.

    python bench/bench_cpu_path.py                      # both bundled models, 3 repeats
    python bench/bench_cpu_path.py --repeats 5 --lengths 16,128,512

Each bundled model loads with ``use_extra_bufts`` on and off (``$LLMLAB_EXTRA_BUFTS``), every
repeat in a fresh process (``llmlab bench``'s own worker: one warm-up, then one greedy generation
per prompt length), interleaved so that a change in machine load hits both settings alike. On a CPU
where the AMX path crashes, ``on`` is not measured: the worker would segfault. Prints a markdown
table of medians (min-max) and the on/off ratio; bench/RESULTS.md has the figures.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2,gemma3-270m")
    parser.add_argument("--lengths", default="16,128,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()

    from llmlab.bench import Stat, _spawn, parse_lengths
    from llmlab.models.llamacpp.cpu import ENV, _decide, cpu_path, describe

    lengths = parse_lengths(args.lengths)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    settings = ["on", "off"]
    if _decide("auto").reason.startswith("off"):
        print(f"extra buffer types crash here ({describe()}); measuring 'off' only", file=sys.stderr)
        settings = ["off"]
    runs: dict[tuple[str, str], list[dict]] = {}
    for rep in range(args.repeats):
        for model in models:
            for setting in (settings if rep % 2 == 0 else settings[::-1]):
                os.environ[ENV] = setting
                print(f"  {model} extra buffer types {setting}: repeat {rep + 1}", file=sys.stderr,
                      flush=True)
                run = _spawn(model, lengths, args.new_tokens, {"n_threads": args.threads})
                runs.setdefault((model, setting), []).append(run)
    os.environ.pop(ENV, None)
    print(f"\n{describe(cpu_path())}; {os.cpu_count()} CPUs, {args.repeats} fresh processes per cell, "
          f"{args.new_tokens} new tokens, greedy\n")
    print("| model | prompt tokens | extra buffer types | prefill tok/s | decode tok/s | RSS after load MB |")
    print("|---|---|---|---|---|---|")
    for model in models:
        for n in lengths:
            medians = {}
            for setting in settings:
                rows = [m for r in runs[(model, setting)] for m in r["measurements"] if m["length"] == n]
                pre, dec = Stat.of([m["prefill_tps"] for m in rows]), Stat.of([m["decode_tps"] for m in rows])
                rss = Stat.of([r["rss_after_load"] for r in runs[(model, setting)]])
                medians[setting] = (pre.median, dec.median)
                print(f"| {model} | {n} | {setting} | {_fmt(pre)} | {_fmt(dec, 1)} | "
                      f"{rss.median / 1e6:.0f} |")
            if len(medians) == 2:
                (p_on, d_on), (p_off, d_off) = medians["on"], medians["off"]
                print(f"| {model} | {n} | on / off | {p_on / p_off:.2f}x | {d_on / d_off:.2f}x | |")


def _fmt(stat, digits: int = 0) -> str:
    f = f"{{:.{digits}f}}"
    return f"{f.format(stat.median)} ({f.format(stat.low)}-{f.format(stat.high)})"


if __name__ == "__main__":
    main()
