"""Speed and memory per model and backend: load time, time to first token, prefill and decode
tokens/s, and peak memory (RSS), at several prompt lengths, with repeats (median and spread).

    >>> from llmlab.bench import run_bench, write_chart
    >>> result = run_bench(["smollm2", "gemma3-270m"], lengths=[16, 128, 512], repeats=3)  # doctest: +SKIP
    >>> write_chart(result, "bench.png")                                                  # doctest: +SKIP

Honest numbers first: every repeat of every model runs in a fresh subprocess
(``python -m llmlab.bench --worker``), so the load time is a cold load in a new process and the RSS
is that model's alone, not the sum of everything loaded so far. The parent samples the child's RSS
with psutil every 20 ms for the peak; the child also reports the kernel's own high-water mark
(``ru_maxrss``) as a cross-check. In the child: one untimed warm-up generation, then one greedy
generation per prompt length. Each prompt starts with a different word, so no KV-cache prefix is
reused from the call before (which would flatter prefill). Prompts are raw text for every model: the
speed of a forward pass does not depend on the chat template. Repeats are interleaved across models,
so a change in machine load hits every model alike; on a shared machine the spread says how much.
A benchmark is a kind of run (``BenchKind`` on ``llmlab.runs``): one unit per repeat x model, stored
as it finishes, so ``llmlab runs`` lists it; it never resumes (running it again measures again).
Each generation's CPU time is measured in the child too, and priced by ``llmlab.cost``'s table: the
cost of 1,000 generations at that prompt length, and of 1M of their tokens.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .checks import whole_number
from .errors import BackendError, ConfigError
from .runs import RunKind, Unit, execute

METRICS = ("ttft_s", "prefill_tps", "decode_tps")
OPENERS = ["Once", "Yesterday", "Somewhere", "Long", "Every", "After", "Before", "During", "Under",
           "Beyond", "Across", "Inside", "Outside", "Near", "Far", "Above"]
FILLER = (
    " upon a time, in a small town on the edge of a wide grey sea, there lived a clockmaker who kept a "
    "notebook of every sound the town made. The bells of the church at noon, the gulls over the harbour, "
    "the carts on the cobbles in the morning and the slow creak of the windmill when the wind came from "
    "the north. Children came to his shop after school to listen to the clocks, and he told them how each "
    "one was built, which spring drove it and why some ran fast in winter. One autumn a stranger arrived "
    "with a clock that had no hands at all, and asked him to make it tell the time again."
)


@dataclass
class Stat:
    median: float | None
    low: float | None
    high: float | None
    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: list[float | None]) -> Stat:
        vals = [v for v in values if v is not None]
        if not vals:
            return cls(None, None, None, [])
        return cls(statistics.median(vals), min(vals), max(vals), vals)


@dataclass
class BenchResult:
    settings: dict
    runs: list[dict]       # one per model x repeat: what the child measured, plus the sampled peak RSS
    rows: list[dict] = field(default_factory=list)  # per model x prompt length: Stat per metric
    run_id: int | None = None  # the run's id in the store once stored
    reopened: bool = False     # re-read from the store: costed at today's prices

    def to_dict(self) -> dict:
        return {"settings": self.settings, "runs": self.runs,
                "summary": [{k: asdict(v) if isinstance(v, Stat) else v for k, v in r.items()}
                            for r in self.rows]}


def parse_lengths(text: str) -> list[int]:
    """'16,128,512' -> [16, 128, 512]; anything else is a ConfigError naming the bad part."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ConfigError(f"--prompt-lengths must be whole numbers >= 1 separated by commas; "
                              f"got {part!r}")
        out.append(int(part))
    return out


def run_bench(models: list[str], lengths: list[int], repeats: int = 3, new_tokens: int = 32,
              n_ctx: int | None = None, threads: int | None = None,
              progress: Callable[[str], None] | None = None, store=None, bar=None) -> BenchResult:
    """Measure every model ``repeats`` times, each in a fresh process; with a ``store`` each
    measurement is stored as it finishes (a run of kind bench); ``bar`` is a ``progress_bar``."""
    from .cost import load_prices
    from .models.registry import check_options, load_options, resolve

    if not models:
        raise ConfigError("name at least one model to benchmark")
    for name, value in (("--repeats", repeats), ("--new-tokens", new_tokens)):
        whole_number(name, value)
    if not lengths or any(not isinstance(n, int) or n < 1 for n in lengths):
        raise ConfigError(f"prompt lengths must be whole numbers >= 1, got {lengths!r}")
    if n_ctx is not None and max(lengths) + new_tokens > n_ctx:
        raise ConfigError(f"the longest prompt ({max(lengths)}) + {new_tokens} new tokens does not fit "
                          f"--n-ctx {n_ctx}")
    options = load_options(n_ctx=n_ctx, threads=threads)
    for name in models:
        resolve(name)  # an unknown model or a bad option fails here, before any subprocess starts
        check_options(name, options)
    load_prices()  # a bad price table fails before measuring, not after
    settings = {"models": list(models), "lengths": list(lengths), "repeats": repeats,
                "new_tokens": new_tokens, "n_ctx": n_ctx, "threads": threads, "machine": _machine()}
    kind = BenchKind(settings, options, progress)
    outcome = execute(kind, store, fresh=True, progress=bar)
    runs = list(outcome.results.values())
    return BenchResult(settings, runs, summarize(runs), outcome.run_id)


class BenchKind(RunKind):
    """A benchmark as a kind of run: one unit per repeat x model (each a fresh process), interleaved.
    Always a fresh run (measuring again is the point of running it again); its units are stored as
    they finish, so `llmlab runs` lists it and `llmlab runs show ID` re-opens its table."""

    kind = "bench"

    def __init__(self, settings: dict, options: dict, progress: Callable[[str], None] | None = None):
        self.settings, self.options, self.callback = settings, options, progress
        self.model = ", ".join(settings["models"])
        self.subject = (f"prompt lengths {','.join(map(str, settings['lengths']))} x {settings['repeats']} "
                        "repeats")
        self.label = f"bench {self.model}"

    def identity(self) -> dict:
        return {k: v for k, v in self.settings.items() if k != "machine"}

    def header(self) -> dict:
        return {"settings": self.settings, "options": self.options}

    def plan(self) -> list[Unit]:
        s = self.settings
        return [Unit(f"{rep + 1}/{name}", n, (rep, name)) for n, (rep, name) in
                enumerate((rep, name) for rep in range(s["repeats"]) for name in s["models"])]

    def run_unit(self, unit: Unit) -> dict:
        rep, name = unit.payload
        if self.callback:
            self.callback(f"{name}: repeat {rep + 1} of {self.settings['repeats']}")
        run = _spawn(name, self.settings["lengths"], self.settings["new_tokens"], self.options)
        run["repeat"] = rep + 1
        return run

    def summarise(self, results: dict[str, dict]) -> dict:
        return {"summary": BenchResult(self.settings, list(results.values()),
                                       summarize(list(results.values()))).to_dict()["summary"]}


def reopen(store, row: dict) -> BenchResult:
    """A stored benchmark's result, re-read from its units (nothing is measured again), costed at
    today's prices."""
    runs = list(store.units(row["id"]).values())
    return BenchResult(row["header"]["settings"], runs, summarize(runs), row["id"], reopened=True)


def summarize(runs: list[dict]) -> list[dict]:
    """Median and spread over repeats, per model x backend x prompt length; the cost of 1,000 such
    generations and of 1M of their tokens at the price table's prices."""
    from .cost import load_prices, per_generation

    prices = load_prices()
    rows = []
    keys = list(dict.fromkeys((r["model"], r["backend"]) for r in runs))
    for model, backend in keys:
        mine = [r for r in runs if (r["model"], r["backend"]) == (model, backend)]
        per_model = {"load_s": Stat.of([r["load_s"] for r in mine]),
                     "peak_rss": Stat.of([r["peak_rss"] for r in mine]),
                     "rss_after_load": Stat.of([r["rss_after_load"] for r in mine])}
        for length in mine[0]["lengths"]:
            ms = [m for r in mine for m in r["measurements"] if m["length"] == length]
            row = {"model": model, "backend": backend, "length": length,
                   "prompt_tokens": Stat.of([m["prompt_tokens"] for m in ms]),
                   "new_tokens": Stat.of([m["completion_tokens"] for m in ms]), **per_model}
            row.update({k: Stat.of([m[k] for m in ms]) for k in METRICS})
            costs = [per_generation(r, m, prices) for r in mine for m in r["measurements"]
                     if m["length"] == length]
            row.update(cost_1k=Stat.of([c[0] for c in costs]), cost_1m=Stat.of([c[1] for c in costs]),
                       cost_notes=list(dict.fromkeys(c[2] for c in costs if c[2])), prices=prices.where())
            rows.append(row)
    return rows


# --- the parent side: one fresh process per model x repeat ---------------------------------------

def _spawn(name: str, lengths: list[int], new_tokens: int, options: dict) -> dict:
    import psutil

    args = json.dumps({"model": name, "lengths": lengths, "new_tokens": new_tokens, "options": options})
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as errs:
        # files, not pipes: a chatty child can never block on a full pipe while we sample it
        proc = subprocess.Popen([sys.executable, "-m", "llmlab.bench", "--worker", args],
                                stdout=out, stderr=errs, text=True)
        peak = 0
        try:
            child = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    peak = max(peak, child.memory_info().rss)
                except psutil.NoSuchProcess:
                    break
                time.sleep(0.02)
        finally:
            proc.wait()
        out.seek(0)
        errs.seek(0)
        lines = out.read().strip().splitlines()
        tail = errs.read().strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    if proc.returncode != 0 or "error" in result or not result:
        why = result.get("error") or (tail[-1] if tail else f"exit code {proc.returncode}")
        raise BackendError(f"benchmark of {name} failed: {why}")
    # the sampled peak can miss a short spike; the kernel's high-water mark cannot
    result["peak_rss_sampled"] = peak
    result["peak_rss"] = max(peak, result["maxrss_kernel"])
    return result


def _machine() -> dict:
    import os
    import platform

    import psutil

    machine = {"platform": platform.platform(), "python": platform.python_version(),
               "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
               "memory_total": psutil.virtual_memory().total}
    try:
        from .models.llamacpp.cpu import cpu_path, describe

        machine["llama_cpp"] = {**cpu_path().to_dict(), "summary": describe()}
    except ImportError:  # no llama-cpp-python: only other backends are measured
        pass
    return machine


# --- the child side ----------------------------------------------------------------------------

def prompt_of(model, n_tokens: int, variant: int) -> str:
    """Raw text of ``n_tokens`` tokens (BOS included) that starts with a word of its own."""
    opener = OPENERS[variant % len(OPENERS)]
    pieces = [t.text for t in model.tokenize(FILLER * (n_tokens // 60 + 2))]
    k = max(0, n_tokens - len(model.encode(opener)))
    text = opener + "".join(pieces[:k])
    for _ in range(6):  # joining token texts can re-tokenize a little differently: adjust
        diff = n_tokens - len(model.encode(text))
        if diff == 0 or k + diff < 0:
            break
        k += diff
        text = opener + "".join(pieces[:k])
    return text


def measure(name: str, lengths: list[int], new_tokens: int, options: dict | None = None) -> dict:
    """Load ``name`` (with backend ``options``) in this process; time one generation per length."""
    import resource

    import psutil

    from .config import GenerationConfig
    from .cost import meter
    from .models.registry import load_model

    me = psutil.Process()
    rss_before = me.memory_info().rss
    model = load_model(name, log=False, **(options or {}))
    rss_loaded = me.memory_info().rss
    greedy = GenerationConfig(temperature=0, max_new_tokens=new_tokens)
    model.generate(prompt_of(model, 8, len(lengths)), greedy.replace(max_new_tokens=4))  # warm-up
    rows = []
    for i, n in enumerate(lengths):
        prompt = prompt_of(model, n, i)
        clock = meter()
        r = model.generate(prompt, greedy)
        rows.append({"length": n, "prompt_tokens": r.usage.prompt_tokens,
                     "completion_tokens": r.usage.completion_tokens, "ttft_s": r.timings.ttft_s,
                     "prefill_tps": r.timings.prefill_tps, "decode_tps": r.timings.decode_tps,
                     "total_s": r.timings.total_s, "cpu_s": clock()["cpu_s"]})
    # ru_maxrss is in kilobytes on Linux (bytes on macOS)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"model": f"{model.backend}/{model.info.name}", "backend": model.backend, "name": name,
            "in_process": model.in_process,
            "lengths": lengths, "load_s": model.load_seconds, "runtime": model.runtime,
            "rss_before_load": rss_before,
            "rss_after_load": rss_loaded, "maxrss_kernel": maxrss, "measurements": rows,
            "info": {"parameters": model.info.parameters, "quantization": model.info.quantization,
                     "file_size": model.info.file_size, "context_length": model.info.context_length}}


def _worker(argv: list[str]) -> int:
    from .errors import LlmlabError

    args = json.loads(argv[argv.index("--worker") + 1])
    from .errors import ContextOverflowError

    try:
        result = measure(args["model"], args["lengths"], args["new_tokens"], args.get("options"))
    except ContextOverflowError as exc:
        print(json.dumps({"error": f"a prompt of {max(args['lengths'])} tokens and {args['new_tokens']} new "
                                   f"tokens do not fit its context window ({exc.context_length} tokens); use "
                                   "shorter --prompt-lengths or fewer --new-tokens"}))
        return 1
    except LlmlabError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


def write_chart(result: BenchResult, path: str | Path) -> Path:
    """A PNG: TTFT, prefill and decode tokens/s against prompt length (median, bars = min to max),
    and load time and peak RSS per model."""
    try:
        import matplotlib
    except ImportError as exc:
        from .errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "eval") from exc
    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [("ttft_s", "time to first token (ms)", 1000), ("prefill_tps", "prefill (tokens/s)", 1),
              ("decode_tps", "decode (tokens/s)", 1)]
    models = list(dict.fromkeys(r["model"] for r in result.rows))
    for ax, (key, title, scale) in zip(axes.flat, panels, strict=False):
        for model in models:
            rows = [r for r in result.rows if r["model"] == model and r[key].median is not None]
            xs = [r["length"] for r in rows]
            med = [r[key].median * scale for r in rows]
            err = [[(r[key].median - r[key].low) * scale for r in rows],
                   [(r[key].high - r[key].median) * scale for r in rows]]
            ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=model)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("prompt length (tokens)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    ax = axes.flat[3]
    firsts = [next(r for r in result.rows if r["model"] == m) for m in models]
    rss = [f["peak_rss"].median / 1e6 for f in firsts]
    bars = ax.bar(range(len(models)), rss, color="tab:gray")
    for bar, f in zip(bars, firsts, strict=True):
        ax.annotate(f"load {f['load_s'].median:.2f} s", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(models)), [m.replace("/", "/\n") for m in models], fontsize=8)
    ax.set_title("peak RSS (MB), with median load time")
    s = result.settings
    fig.suptitle(f"llmlab bench: {s['repeats']} repeats, {s['new_tokens']} new tokens, median and min-max")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(_worker(sys.argv))
