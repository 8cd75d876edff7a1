"""Foundation benchmark: llmlab against raw llama-cpp-python, measured in the same run.

    python bench/bench_foundation.py [--repeats 5] [--tokens 256]

1. decode tokens/s of the llamacpp backend vs raw ``Llama.create_completion(stream=True)``: same
   GGUF, same prompt, greedy, the same number of new tokens, same n_ctx and threads; interleaved
   repeats, median.
2. process start to first token: ``llmlab prompt --raw`` vs a raw llama-cpp-python script doing
   the same (import, load with the same n_ctx, stream, print the first token).
3. ``llmlab --help`` wall time.
Prints a markdown table; bench/RESULTS.md records it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

PROMPT = "Here is a long story about a dragon who learned to read. Chapter 1.\n\nOnce upon a time"
N_CTX = 8192


def smollm2_path() -> str:
    from llmlab.models.registry import BUNDLED

    return str(BUNDLED["smollm2"].path())


def decode_rate(stamps: list[float], n_tokens: int) -> float:
    return (n_tokens - 1) / (stamps[-1] - stamps[0])


def raw_decode(llm, n: int) -> tuple[float, int]:
    stamps, text = [], ""
    for chunk in llm.create_completion(PROMPT, max_tokens=n, temperature=0.0, stream=True):
        stamps.append(time.perf_counter())
        text += chunk["choices"][0]["text"]
    # create_completion does not report usage when streaming: count its tokens
    count = len(llm.tokenize(text.encode(), add_bos=False))
    return decode_rate(stamps, count), count


def llmlab_decode(model, n: int) -> tuple[float, int]:
    r = model.generate(PROMPT, temperature=0, max_new_tokens=n)
    return r.timings.decode_tps, r.usage.completion_tokens


def first_byte_seconds(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    first = proc.stdout.read(1)
    elapsed = time.perf_counter() - start
    proc.kill()
    proc.wait()
    assert first, f"no output from {cmd}"
    return elapsed


RAW_SCRIPT = """
import sys
from llama_cpp import Llama
from llmlab.models.llamacpp.cpu import llama_params  # the same weight layout as llmlab (no AMX crash)
with llama_params():
    llm = Llama(sys.argv[1], n_ctx=int(sys.argv[2]), n_threads={threads}, verbose=False)
for chunk in llm.create_completion(sys.argv[3], max_tokens=32, temperature=0.0, stream=True):
    t = chunk["choices"][0]["text"]
    if t:
        sys.stdout.write(t)
        sys.stdout.flush()
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256)
    args = ap.parse_args()

    from llama_cpp import Llama

    from llmlab import load_model
    from llmlab.config import default_threads

    path, threads = smollm2_path(), default_threads()
    rows = []

    model = load_model("smollm2", log=False, n_ctx=N_CTX, n_threads=threads)
    from llmlab.models.llamacpp.cpu import llama_params

    with llama_params():  # the same weight layout as llmlab's, which also keeps AMX CPUs alive
        raw = Llama(path, n_ctx=N_CTX, n_threads=threads, verbose=False)
    raw_decode(raw, 16), llmlab_decode(model, 16)  # warm-up
    raw_rates, ours_rates, counts = [], [], set()
    for _ in range(args.repeats):
        rate, n = raw_decode(raw, args.tokens)
        raw_rates.append(rate)
        counts.add(("raw", n))
        rate, n = llmlab_decode(model, args.tokens)
        ours_rates.append(rate)
        counts.add(("llmlab", n))
    raw.close()
    model.close()
    r, o = statistics.median(raw_rates), statistics.median(ours_rates)
    rows.append(("decode tokens/s, greedy, SmolLM2-135M Q4_1", f"{r:.1f}", f"{o:.1f}", f"{o / r:.3f}",
                 ">= 0.95"))

    env = dict(os.environ, LLMLAB_DB=os.path.join(tempfile.mkdtemp(), "bench.db"))
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(RAW_SCRIPT.format(threads=threads))
    raw_cmd = [sys.executable, fh.name, path, str(N_CTX), PROMPT]
    ours_cmd = [sys.executable, "-m", "llmlab", "prompt", "--raw", "-t", "0", "-n", "32", "--no-stats",
                "-m", "smollm2", PROMPT]
    first_byte_seconds(ours_cmd, env)  # warm the page cache and the sha256 cache
    raw_t, ours_t = [], []
    for _ in range(args.repeats):
        raw_t.append(first_byte_seconds(raw_cmd, env))
        ours_t.append(first_byte_seconds(ours_cmd, env))
    r, o = statistics.median(raw_t), statistics.median(ours_t)
    rows.append(("process start to first token, s", f"{r:.3f}", f"{o:.3f}", f"{o / r:.3f}", "<= 1.5"))

    help_t = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "llmlab"), "--help"],
                       capture_output=True, check=True)
        help_t.append(time.perf_counter() - start)
    rows.append(("`llmlab --help`, s", "", f"{statistics.median(help_t):.3f}", "", "< 0.3 s"))

    print(f"threads={threads}, n_ctx={N_CTX}, repeats={args.repeats} (median), "
          f"new tokens={args.tokens}, token counts seen: {sorted(counts)}\n")
    from llmlab.runs import Table

    table = Table(["measure", "raw llama-cpp-python", "llmlab", "ratio", "target"])
    for row in rows:
        table.add_row(*row)
    print(table.to_markdown())


if __name__ == "__main__":
    main()
