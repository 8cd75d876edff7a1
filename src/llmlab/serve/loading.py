"""What ``llmlab serve`` loads: the ``-m`` and ``-e`` specs, each distinct model once, checked first.

    -m smollm2                 serve the bundled model as "smollm2"
    -m llama3.2:1b=smollm2     serve it (the same loaded copy) under a second name as well
    -e minilm                  an embedding model (the bundled all-MiniLM-L6-v2; any load_embedder name:
                               st/<dir>, a directory, openai/NAME@URL, ollama/NAME@URL)
    -m rag/novels@smollm2      answer from the collection "novels" with smollm2 (``rag.py``); the
                               same loaded smollm2 as a plain ``-m smollm2``

Every name, load option and collection is checked before the first model loads, so a clash or a
typo costs nothing; then each rag collection's embedder is loaded, then the models.
"""

from __future__ import annotations

from ..errors import ConfigError
from .models import Served, ServedModels

DEFAULT_N_CTX = 4096  # each request's window in a served GGUF model


def parse_spec(spec: str) -> tuple[str | None, str]:
    """``"llama3.2:1b=smollm2"`` -> ``("llama3.2:1b", "smollm2")``; ``"smollm2"`` -> ``(None, ...)``."""
    alias, sep, target = spec.partition("=")
    if sep and alias.strip() and target.strip():
        return alias.strip(), target.strip()
    if sep:
        raise ConfigError(f"cannot read model spec {spec!r}; use MODEL or NAME=MODEL")
    return None, spec.strip()


def serving_threads() -> int:
    """llama.cpp threads for a served model: every core but one, which the HTTP side needs.

    llama.cpp's threads wait for each other at a spinning barrier after every operation; when the
    event loop takes one of their cores the others spin until it is back, so on a small machine a
    server that gives llama.cpp all the cores is slower than one that leaves it one fewer.
    """
    from ..config import default_threads

    return max(1, default_threads() - 1)


def load_served(specs: list[str], embedding_specs: list[str], *, parallel: int = 4, n_ctx: int | None = None,
                queue_size: int = 64, threads: int | None = None, log: bool = True,
                batch_prompts: bool = False, rag_store: str | None = None, rag_k: int = 5,
                rag_retriever: str = "hybrid") -> ServedModels:
    """Load every model named on the command line (each distinct model once).

    A GGUF model's ``n_ctx`` is each request's window in the engine (default 4096) and its threads
    default to :func:`serving_threads`; ``batch_prompts`` puts its engine in the mode that evaluates
    prompts in the generations' batches (faster; see ``engine.py``). Other backends get only what
    the user set. ``rag_*`` apply
    to every ``rag/COLLECTION@MODEL`` spec (``rag_store`` as ``llmlab rag --store`` takes it).
    """
    from ..models.embedders import EMBEDDING_ALIASES, check_embedder_options, load_embedder, resolve_embedder
    from ..models.registry import check_options, load_model, load_options, resolve
    from .rag import RagModel, is_rag

    given = load_options(n_ctx=n_ctx, threads=threads)
    targets = [parse_spec(spec) for spec in specs or ["smollm2"]]
    rags = [(alias, RagModel.parse(target, store=rag_store, k=rag_k, retriever=rag_retriever))
            for alias, target in targets if is_rag(target)]
    targets = [(alias, target) for alias, target in targets if not is_rag(target)]
    embedders = [parse_spec(spec) for spec in embedding_specs]
    names: dict[str, str] = {}

    def claim(name: str, model: str) -> None:
        if names.setdefault(name, model) != model:
            raise ConfigError(f"two models are served under the name {name!r}: {names[name]} and {model}")

    for alias, target in targets:  # every name and option is checked before the first model loads
        check_options(target, given)
        for name in ([alias] if alias else []) + [target]:
            claim(name, target)
    for alias, rag in rags:
        check_options(rag.target, given)
        rag.check()
        for name in ([alias] if alias else []) + [rag.name]:
            claim(name, "rag " + rag.name)
    keys = {}  # an embedding spec -> what it loads: minilm, a directory, backend/name on a server
    for alias, target in embedders:
        check_embedder_options(target, {})
        _, display, path = resolve_embedder(target)
        bundled = target.removeprefix("st/") in EMBEDDING_ALIASES
        keys[target] = display if bundled else str(path) if path is not None else target
        for name in ([alias] if alias else []) + _embedding_names(target):
            claim(name, "embedding " + keys[target])
    for _, rag in rags:  # the embedder is quicker to load than a model, and may fail the same way
        rag.warm()
    served = ServedModels()
    loaded: dict[str, Served] = {}

    def load(target: str) -> Served:
        if target not in loaded:
            backend, display, path = resolve(target)
            options = dict(given)
            if backend == "llamacpp":
                options = {"n_ctx": n_ctx or DEFAULT_N_CTX, "n_threads": threads or serving_threads()}
            model = load_model(target, log=log, **options)
            # a file is served under its file name; an alias or backend/alias as written
            name = path.name if path is not None and target.rstrip("/").endswith(path.name) else target
            if backend == "llamacpp":
                from ..models.llamacpp.batched import BatchedModel

                model = BatchedModel(model, parallel=parallel, n_ctx_seq=options["n_ctx"],
                                     batch_prompts=batch_prompts)
                workers = parallel
            else:
                workers = 1
            loaded[target] = Served(name, model, "generate", workers, queue_size)
        return loaded[target]

    for alias, target in targets:
        served.add(load(target), *([alias] if alias else []))
    for alias, rag in rags:  # through the same loaded copy as a plain -m of its model
        served.add_rag(rag, load(rag.target), *([alias] if alias else []))
    embedded: dict[str, Served] = {}
    for alias, target in embedders:
        key = keys[target]
        if key not in embedded:  # -e minilm -e all-minilm: one model, every name
            embedded[key] = Served(target, load_embedder(target), "embed", 1, queue_size)
        served.add(embedded[key], *([alias] if alias else []), *_embedding_names(target))
    return served


def _embedding_names(target: str) -> list[str]:
    """The names an embedding model answers to: the bundled MiniLM answers to all its usual ones."""
    from ..models.embedders import EMBEDDING_ALIASES

    alias = EMBEDDING_ALIASES.get(target.removeprefix("st/"))
    if alias:
        return [target] + [a for a, b in EMBEDDING_ALIASES.items() if b == alias and a != target]
    return [target]
