"""The CPU path llama.cpp takes on this machine, and the load setting that keeps it from crashing.

llama.cpp may keep a model's weights in *extra buffer types*: layouts repacked for the CPU's SIMD
units (``REPACK``) and, on Intel CPUs with AMX tiles (Sapphire Rapids and later), an AMX buffer.
That AMX path segfaults inside ``llama_decode`` on any prompt of more than one token, on both
bundled models and in raw llama-cpp-python alike (llama.cpp issue 20824). Building without AMX does
not help: a native build ignores ``GGML_AMX_*``. What helps is a load-time switch,
``llama_model_params.use_extra_bufts = False``, which llama-cpp-python's ``Llama()`` does not expose;
:func:`llama_params` sets it while the weights load.

The policy, ``$LLMLAB_EXTRA_BUFTS`` = ``auto`` (default) | ``on`` | ``off``: *auto* turns extra buffer
types off on a CPU with AMX tiles (whatever the build reports), and leaves llama.cpp's own default
(on) everywhere else, where repacking is safe and makes Gemma's Q4_K weights up to 1.2x faster to
evaluate (SmolLM2's Q4_1 has no repacked layout; bench/bench_cpu_path.py, figures in
bench/RESULTS.md). ``llmlab info``, ``llmlab bench`` and ``llmlab doctor`` print :func:`describe`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import asdict, dataclass
from functools import lru_cache

from ...errors import ConfigError

ENV = "LLMLAB_EXTRA_BUFTS"
_patch_lock = threading.Lock()


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) from /proc/cpuinfo; ("unknown", empty) where there is none."""
    name, flags = "unknown", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and name == "unknown":
                    name = " ".join(value.split())
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
                if name != "unknown" and flags:
                    break
    except OSError:
        pass
    return name, flags


def cpu_has_amx() -> bool:
    flags = cpu_info()[1]
    return bool(flags & {"amx_tile", "amx_int8", "amx_bf16"})


@lru_cache(maxsize=1)
def build_features() -> tuple[str, tuple[str, ...]]:
    """(llama-cpp-python version, CPU features this llama.cpp build uses, in its own order)."""
    import llama_cpp

    text = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    on = []
    for part in text.replace("\n", "|").split("|"):
        key, sep, value = part.rpartition("=")
        name = key.split(":")[-1].strip()
        if sep and value.strip() == "1" and name not in on:
            on.append(name)
    return getattr(llama_cpp, "__version__", "?"), tuple(on)


@dataclass(frozen=True)
class CpuPath:
    cpu: str
    llama_cpp: str
    features: tuple[str, ...]        # what the build uses, e.g. AVX2, AVX512, AMX_INT8, REPACK
    amx_cpu: bool                    # the CPU has AMX tiles
    extra_buffer_types: bool         # repacked / AMX weight layouts allowed
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def policy() -> str:
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "on", "off"):
        raise ConfigError(f"${ENV} must be auto, on or off, got {value!r} (unset it for auto)")
    return value


@lru_cache(maxsize=4)
def _decide(choice: str) -> CpuPath:
    version, features = build_features()
    name, _ = cpu_info()
    amx_cpu = cpu_has_amx()
    if choice == "on":
        crash = "; this CPU has AMX, where llama.cpp's AMX path crashes" if amx_cpu else ""
        use, why = True, f"on (${ENV}=on{crash})"
    elif choice == "off":
        use, why = False, f"off (${ENV}=off)"
    elif amx_cpu:  # whatever the build reports: a build that loads its CPU code later may not say
        use, why = False, "off: this CPU has AMX, where llama.cpp's AMX path crashes (llama.cpp issue 20824)"
    else:
        use, why = True, ("on: this CPU has no AMX, so weights are repacked where llama.cpp has a "
                          "layout for their type")
    return CpuPath(name, version, features, amx_cpu, use, why)


def cpu_path() -> CpuPath:
    """What llama.cpp will do with weights loaded now (the policy is read from the environment)."""
    return _decide(policy())


def describe(path: CpuPath | None = None) -> str:
    """One line: the CPU, the build's SIMD features, and whether weights are repacked."""
    p = path or cpu_path()
    widest = [f for f in p.features if f.startswith(("AVX2", "AVX512", "AMX", "NEON", "SVE"))]
    simd = ", ".join(widest or [f for f in p.features if f.startswith(("AVX", "SSE"))]) or "no SIMD"
    amx = "; the CPU has AMX" if p.amx_cpu else ""
    return f"llama.cpp {p.llama_cpp} on {p.cpu} ({simd}{amx}): extra buffer types {p.reason}"


@contextlib.contextmanager
def llama_params():
    """While weights load: llama-cpp-python's default model params with the safe ``use_extra_bufts``.

    ``Llama.__init__`` builds its params from ``llama_model_default_params()`` and loads the weights
    at once, so replacing that function for the duration of the constructor is the one place the
    field can be set. A lock keeps two loads in different threads from seeing each other's patch.
    """
    import llama_cpp.llama_cpp as low

    use = cpu_path().extra_buffer_types
    original = low.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = use
        return p

    with _patch_lock:
        low.llama_model_default_params = params
        try:
            yield use
        finally:
            low.llama_model_default_params = original
