"""Opening a GGUF file with llama.cpp: the one place a ``llama_cpp.Llama`` is made.

Every load goes through ``open_llama``: the in-process model, the serving engine (which shares its
weights), the hf backend's vocabulary reads, ``bench`` and ``doctor``. It turns llama.cpp's load
chatter off, applies the CPU weight-layout policy of ``cpu.py`` (no AMX crash), and turns
llama.cpp's failures into one-line ``ModelLoadError``s.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import MissingDependencyError, ModelLoadError


def open_llama(path: Path, **options):
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise MissingDependencyError("llama-cpp-python", "all") from exc
    from llama_cpp._utils import suppress_stdout_stderr

    from .cpu import cpu_path, llama_params

    cpu_path()  # a bad $LLMLAB_EXTRA_BUFTS is a ConfigError of its own, not a failed load
    options.setdefault("verbose", False)
    try:
        # llama.cpp writes load chatter straight to the C stderr, past verbose=False; llama_params
        # keeps the weights out of llama.cpp's crashing AMX layout (see cpu.py)
        with suppress_stdout_stderr(disable=options["verbose"]), llama_params():
            return Llama(str(path), **options)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from exc
