"""What every page of the web UI shares: loaded models, the store, and chat settings as a config.

The UI loads a model the first time a page asks for it (by any name ``load_model`` takes: a bundled
alias, a path, ``ollama/...``, ``openai/...@URL``) and keeps it for every page and every visitor.
A local model is not safe to use from two threads at once, and two pages (the chat and the arena,
or two browser tabs) may ask at the same time, so each model has a lock that a page holds while it
generates. Nothing here imports gradio, so the logic is tested without a browser.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

from ..config import GenerationConfig
from ..errors import ConfigError

# the sidebar's settings, by name, with the values a new chat starts from
# (GenerationConfig's own defaults, so a setting means the same here as in the CLI and the API)
DEFAULTS = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "max_new_tokens": 256,
            "repeat_penalty": 1.0, "seed": -1}


def config_from(settings: dict, **extra) -> GenerationConfig:
    """The sidebar's values as a ``GenerationConfig`` (a seed of -1 or blank means unseeded)."""
    s = {**DEFAULTS, **{k: v for k, v in settings.items() if k in DEFAULTS and v is not None}}
    seed = s["seed"]
    seed = None if seed in ("", None) or int(seed) < 0 else int(seed)
    return GenerationConfig(temperature=float(s["temperature"]), top_p=float(s["top_p"]),
                            top_k=int(s["top_k"]), max_new_tokens=int(s["max_new_tokens"]),
                            repeat_penalty=float(s["repeat_penalty"]), seed=seed, **extra)


class Workbench:
    """Models loaded on demand and shared, one store, one lock per model.

    >>> wb = Workbench(db="calls.db")                         # doctest: +SKIP
    >>> with wb.using("smollm2") as model:                    # doctest: +SKIP
    ...     model.generate("Hi", max_new_tokens=5).text
    """

    def __init__(self, db: str | Path | None = None, default_model: str = "smollm2",
                 models: dict | None = None, **load_options):
        self.db = db
        self.default_model = default_model
        self.load_options = {k: v for k, v in load_options.items() if v is not None}
        self._models: dict[str, object] = dict(models or {})  # name -> Model, given or loaded
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._store = None

    @property
    def store(self):
        """The one store the UI writes to (conversations, presets, votes, runs; models log calls)."""
        if self._store is None:
            from ..store import Store

            with self._guard:
                if self._store is None:
                    self._store = Store.open(self.db)
        return self._store

    def choices(self) -> list[str]:
        """Model names to offer: the loaded ones, then the bundled ones (any other name may be typed)."""
        from ..models.registry import BUNDLED

        return list(dict.fromkeys([*self._models, self.default_model, *BUNDLED]))

    def model(self, name: str | None):
        """The model called ``name``, loaded on first use (one load even when two pages ask at once)."""
        from ..models.registry import OPTIONS, load_model, resolve_backend

        name = (name or self.default_model).strip()
        if not name:
            raise ConfigError("choose a model")
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:  # a second caller waits for the first one's load instead of loading again
            if name not in self._models:
                # the command line's --n-ctx/--threads apply to the local models it loads
                takes = OPTIONS.get(resolve_backend(name), set())
                options = {k: v for k, v in self.load_options.items() if k in takes}
                self._models[name] = load_model(name, db=self.db, **options)
        return self._models[name]

    def lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(f"use:{name}", threading.Lock())

    @contextmanager
    def using(self, name: str | None):
        """The model, held for this caller alone until the block ends."""
        name = (name or self.default_model).strip()
        model = self.model(name)
        with self.lock(name):
            yield model

    def close(self) -> None:
        for model in self._models.values():
            model.close()
        self._models.clear()
        if self._store is not None:
            self._store.close()
            self._store = None
