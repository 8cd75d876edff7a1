"""What a run cost: the tokens it used, the time it took, and a price table the user writes.

The price table is a YAML file, ``prices.yaml`` in llmlab's data directory (``$LLMLAB_HOME``), or
wherever ``$LLMLAB_PRICES`` points; ``llmlab cost --init`` writes a commented example, ``llmlab cost``
shows what it holds. Each entry is a model name (``openai/gpt-4o-mini``, a bare ``gpt-4o-mini``, or
a glob such as ``openai/gpt-4o*``) with USD per 1M ``input`` and ``output`` tokens, or a
``per_hour`` price for the machine that runs it; exact names win over patterns, then the file's
order decides. A top-level ``per_hour`` prices every model that runs in this process (llamacpp/,
hf/) that no entry names.

    per_hour: 0.10                                      # an hour of CPU time on this machine
    models:
      openai/gpt-4o-mini: {input: 0.15, output: 0.60}
      ollama/*: {per_hour: 0.50, clock: wall}

A model run here costs its measured CPU time (``time.process_time()``: this process's every thread,
so four busy threads for a second are four CPU seconds) x ``per_hour`` / 3600; a model behind a
server is priced by its tokens, or by wall time x ``per_hour`` (this process's CPU time says nothing
of the server's). Nothing is invented: a model run here with no price costs $0 and the report says
to set ``per_hour`` in the file; a server model with no entry has no cost, and the report says so.
Runs store their tokens and times per unit, so a resumed or re-opened run is priced from everything
it stored, always at the table's current prices.

What it gives up: the time to load a model and to set a method up (calibration's content-free
prompts) is not counted, only the units' own; GPU time is not measured (``clock: wall`` prices a GPU
machine by wall time instead); a server's tokens are counted by this side's tokenizer where the
server does not report them (scoring).
"""

from __future__ import annotations

import fnmatch
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .runs.table import Column, Table

PRICES_ENV = "LLMLAB_PRICES"
CLOCKS = ("cpu", "wall")

EXAMPLE = """\
# llmlab's price table: what `llmlab eval` and `llmlab bench` multiply tokens and time by.
# Prices are USD. Check them against your provider's price page: they change, and llmlab ships none.
#
# A model that runs in llmlab's own process (llamacpp/, hf/) costs its measured CPU time (every
# thread counted: four busy threads for a second are four CPU seconds) x per_hour / 3600. Set the
# price of one CPU hour here, e.g. a cloud machine's hourly price divided by its cores.
# per_hour: 0.36

# Per model: `input` and `output` USD per 1M tokens, or `per_hour` (with `clock: cpu` or `clock: wall`;
# wall is the default for models behind a server, and the one to use for a GPU machine).
# Keys are backend/name, a bare name, or a glob pattern; exact names win over patterns.
models:
  # openai/gpt-4o-mini: {input: 0.15, output: 0.60}
  # "openai/gpt-4o*": {input: 2.50, output: 10.00}
  # "ollama/*": {per_hour: 0.50, clock: wall}
  # llamacpp/smollm2: {per_hour: 0.02}
"""


def prices_path() -> Path:
    """The price table's file: ``$LLMLAB_PRICES``, else ``prices.yaml`` in the data directory."""
    if env := os.environ.get(PRICES_ENV):
        return Path(env).expanduser()
    from .config import data_dir

    return data_dir() / "prices.yaml"


@dataclass(frozen=True)
class Price:
    entry: str                      # the key that matched ("per_hour" for the file's default)
    input: float | None = None      # USD per 1M input tokens
    output: float | None = None     # USD per 1M output tokens
    per_hour: float | None = None   # USD per hour of the clock below
    clock: str | None = None        # cpu | wall; None: cpu for a model run here, wall for a server

    def describe(self) -> str:
        if self.per_hour is None:
            return f"${self.input:g} in / ${self.output:g} out per 1M tokens"
        return f"${self.per_hour:g} per {self.clock.replace('cpu', 'CPU') + ' ' if self.clock else ''}hour"


@dataclass
class PriceTable:
    path: Path
    exists: bool
    per_hour: float | None          # for models run here that no entry names
    entries: list[Price]

    def lookup(self, names: Iterable[str], in_process: bool) -> Price | None:
        """The entry for the first of ``names`` an entry names exactly, else the first pattern that
        matches one of them; else the default ``per_hour`` for a model run here."""
        names = [n for n in dict.fromkeys(names) if n]
        for price in self.entries:
            if price.entry in names:
                return price
        for price in self.entries:
            pattern = any(c in price.entry for c in "*?[")
            if pattern and any(fnmatch.fnmatchcase(n, price.entry) for n in names):
                return price
        if in_process and self.per_hour is not None:
            return Price("per_hour", per_hour=self.per_hour)
        return None

    def where(self) -> str:
        return str(self.path) if self.exists else f"{self.path} (absent: `llmlab cost --init` writes one)"


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The price table; a missing file is an empty table, a bad one a ConfigError at its line."""
    from .specfile import Where
    from .specfile import yaml as specyaml

    path = Path(path).expanduser() if path is not None else prices_path()
    if not path.is_file():
        if path.exists():
            raise ConfigError(f"price table {path} is not a file")
        return PriceTable(path, False, None, [])
    doc = specyaml.load(path, ConfigError, "price table")
    where = Where(path, ConfigError)
    if doc is None:
        return PriceTable(path, True, None, [])
    if not isinstance(doc, dict):
        raise where.error(None, "the price table is a mapping with `per_hour` and `models`")
    where.keys(doc, {"per_hour", "models"}, "the price table")
    default = _amount(where, doc, "per_hour", "per_hour") if "per_hour" in doc else None
    models = doc.get("models") or {}
    if not isinstance(models, dict):
        raise where.error(doc.line_of("models"), "`models` maps model names to prices")
    entries = []
    for name, entry in models.items():
        line = models.line_of(name)
        if not isinstance(entry, dict):
            raise where.error(line, f"{name}: give {{input: USD, output: USD}} per 1M tokens, or "
                                    "{per_hour: USD}")
        where.keys(entry, {"input", "output", "per_hour", "clock"}, str(name))
        priced = {k: _amount(where, entry, k, str(name)) for k in ("input", "output", "per_hour")
                  if k in entry}
        if "per_hour" in priced and ({"input", "output"} & set(priced)):
            raise where.error(line, f"{name}: give per-token prices or per_hour, not both")
        if "per_hour" not in priced and set(priced) != {"input", "output"}:
            raise where.error(line, f"{name}: give both input and output (USD per 1M tokens), or per_hour")
        clock = entry.get("clock")
        if clock is not None and (clock not in CLOCKS or "per_hour" not in priced):
            raise where.error(entry.line_of("clock"), f"{name}: clock is cpu or wall, with per_hour")
        entries.append(Price(str(name), priced.get("input"), priced.get("output"), priced.get("per_hour"),
                             clock))
    return PriceTable(path, True, default, entries)


def _amount(where, d: dict, key: str, label: str) -> float:
    value = d[key]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise where.error(d.line_of(key), f"{label}: {key} must be a number of USD >= 0, got {value!r}")
    return float(value)


def init_prices(path: str | Path | None = None) -> Path:
    """Write the commented example table (never over an existing file)."""
    path = Path(path).expanduser() if path is not None else prices_path()
    if path.exists():
        raise ConfigError(f"{path} exists already; edit it, or remove it to start again")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(EXAMPLE, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the price table {path}: {exc.strerror or exc}") from None
    return path


# --- measuring -------------------------------------------------------------------------------------

def meter() -> Callable[[], dict]:
    """Start a clock; calling what it returns gives ``seconds`` (wall) and ``cpu_s`` (this process's
    CPU time, every thread; None where the platform cannot say) since the start."""
    wall = time.perf_counter()
    try:
        cpu = time.process_time()
    except OSError:
        cpu = None

    def read() -> dict:
        return {"seconds": time.perf_counter() - wall,
                "cpu_s": None if cpu is None else time.process_time() - cpu}
    return read


def usage(model, name: str, results: Iterable[dict]) -> dict:
    """A run's usage from its units' stored results: tokens in and out, CPU and wall seconds, and the
    model as the price table names it (what a run's summary stores under ``usage``)."""
    results = list(results)
    # a benchmark's units store the tokens they read as "tokens": it generates none
    tokens = [r.get("input_tokens", r.get("tokens")) for r in results]
    counted = [r for r, n in zip(results, tokens, strict=True) if n is not None]
    timed = [r for r in results if r.get("cpu_s") is not None]
    return {"model": f"{model.backend}/{model.info.name}", "name": name,
            "in_process": bool(getattr(model, "in_process", True)), "units": len(results),
            "counted": len(counted), "input_tokens": sum(n for n in tokens if n is not None),
            "output_tokens": sum(r.get("output_tokens") or 0 for r in counted),
            "cpu_s": sum(r["cpu_s"] for r in timed) if len(timed) == len(results) else None,
            "seconds": sum(r.get("seconds") or 0 for r in results)}


@dataclass
class Estimate:
    usd: float | None
    how: str            # what it is computed from, in a few words
    note: str | None    # why there is no (or a $0) figure


def estimate(use: dict, table: PriceTable) -> Estimate:
    """The cost of a run's ``usage`` at the table's prices."""
    price = table.lookup([use.get("model"), use.get("name"), (use.get("model") or "").partition("/")[2]],
                         use.get("in_process", True))
    if price is None:
        if use.get("in_process", True):
            return Estimate(0.0, "no per_hour set", f"no price per hour for models run here: set per_hour in "
                                                   f"{table.where()}")
        return Estimate(None, "no price", f"no price for {use.get('model')}: add it to {table.where()}")
    if price.per_hour is None:
        if use.get("counted", 0) < use.get("units", 0) or not use.get("units"):
            return Estimate(None, price.describe(), "tokens were not recorded for every unit of this run")
        usd = use["input_tokens"] * price.input / 1e6 + use["output_tokens"] * price.output / 1e6
        return Estimate(usd, f"tokens × ${price.input:g}/${price.output:g} per 1M", None)
    clock = price.clock or ("cpu" if use.get("in_process", True) else "wall")
    note = None
    seconds = use.get("cpu_s") if clock == "cpu" else use.get("seconds")
    if seconds is None:  # no CPU time: priced by the wall clock, and said
        clock, seconds = "wall", use.get("seconds") or 0.0
        note = "CPU time not recorded for every unit: priced by wall time"
    return Estimate(seconds * price.per_hour / 3600,
                    f"{seconds:.1f} {'CPU' if clock == 'cpu' else 'wall'} s × ${price.per_hour:g}/h", note)


def per_generation(run: dict, m: dict, table: PriceTable) -> tuple[float | None, float | None, str | None]:
    """One of ``llmlab bench``'s generations (``m``, of a model's ``run``) priced: USD per 1,000 such
    generations, USD per 1M of their tokens (prompt and generated), and why a figure is missing."""
    use = {"model": run["model"], "name": run.get("name"), "in_process": run.get("in_process", True),
           "units": 1, "counted": 1, "input_tokens": m["prompt_tokens"],
           "output_tokens": m["completion_tokens"],
           "cpu_s": m.get("cpu_s"), "seconds": m.get("total_s") or 0.0}
    est = estimate(use, table)
    if est.usd is None:
        return None, None, est.note
    tokens = m["prompt_tokens"] + m["completion_tokens"]
    return est.usd * 1000, est.usd / tokens * 1e6 if tokens else None, est.note


# --- reporting -------------------------------------------------------------------------------------

def usd(x: float | None) -> str:
    if x is None:
        return "n/a"
    if x == 0:
        return "$0"
    if x >= 1:
        return f"${x:,.2f}"
    return f"${x:.{max(2, 1 - math.floor(math.log10(x)))}f}"  # two significant digits: $0.000081


def report(rows: list[tuple[str, dict | None]], table: PriceTable | None = None,
           reopened: bool = False, what: str = "system") -> tuple[Table, list[str], dict]:
    """The cost table of a run's systems (label, usage), its notes, and the figures as JSON-able data
    (label -> usage + ``cost_usd`` + ``cost_basis``)."""
    table = table or load_prices()
    right = {"justify": "right"}
    t = Table([what, Column("in tokens", **right), Column("out tokens", **right),
               Column("CPU s", **right), Column("wall s", **right), Column("cost", **right), "from"],
              title="tokens and estimated cost", title_justify="left")
    notes, data = [], {}
    for label, use in rows:
        if not use:
            t.add_row(label, "", "", "", "", "n/a", "not recorded")
            continue
        est = estimate(use, table)
        counted = use.get("counted", 0) == use.get("units", 0)
        t.add_row(label, f"{use['input_tokens']:,}" if counted else "n/a",
                  f"{use['output_tokens']:,}" if counted else "n/a",
                  "n/a" if use.get("cpu_s") is None else f"{use['cpu_s']:.1f}", f"{use['seconds']:.1f}",
                  usd(est.usd), est.how)
        data[label] = {**use, "cost_usd": est.usd, "cost_basis": est.how}
        if est.note and est.note not in notes:
            notes.append(est.note)
    if table.exists:
        notes.append(f"cost at the prices in {table.path}" + (" today, not when it ran" if reopened else ""))
    return t, notes, data


def cost_line(est: Estimate) -> str:
    """One line: ``cost: $0.0012 (12.0 cpu s at $0.36/hour)``."""
    return f"cost: {usd(est.usd)} ({est.how})" + (f"; {est.note}" if est.note else "")
