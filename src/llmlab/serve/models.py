"""The models a server holds: names and aliases, one bounded request queue per model, worker threads.

A llama.cpp context is not thread-safe, so every request to a model goes through that model's
queue. A GGUF model gets a batching ``Engine`` and ``parallel`` workers (requests run together,
each in its own sequence slot); any other backend gets one worker, so its requests run one at a
time. A full queue refuses at once (the API answers 503 with ``Retry-After``) rather than letting
latency grow without bound.

Work runs in a worker thread through the ordinary ``Model.prompt()`` path, so timings and the call
log are the same as for any other llmlab call; results reach the event loop through an asyncio
queue. Structured output and tools take that road too: ``Model.prompt`` turns tools into the
constrained call format (``tools/calling.py``), and the engine gives each sequence a sampler made
from its own config (``sampling.make_sampler``), grammar included, as the in-process model does.

A request whose client went away is cancelled: the worker closes the response iterator, which frees
the model (or the engine slot) at once and logs the partial answer as interrupted.

A rag model (``-m rag/COLLECTION@MODEL``, ``rag.py``) is one more name for MODEL's ``Served``, so it
is listed and queued as MODEL; ``get()`` hands it out only to callers that ground the prompt first.

What ``llmlab serve -m/-e`` loads into these is in ``loading.py``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable

from ..errors import ConfigError, ModelNotFoundError, NotSupportedError
from ..models.base import Model


class QueueFull(Exception):
    """The model's request queue is full; the API answers 503 with Retry-After."""


class ShuttingDown(Exception):
    """The server is stopping; a request still running or waiting ends with this (503)."""


class Work:
    """One request's job for a worker thread, and the asyncio queue its results come back on."""

    def __init__(self, fn: Callable[[Work], None]):
        self.fn = fn
        # what logs the request if it never runs (a generation: an interrupted call, no text)
        self.unstarted: Callable[[Work], None] | None = getattr(fn, "unstarted", None)
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()  # set when its client leaves or the server stops

    def emit(self, kind: str, value=None) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))

    async def results(self):
        """(kind, value) pairs until the work ends; leaving early cancels the work."""
        try:
            while True:
                kind, value = await self.events.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield kind, value
        finally:
            self.cancelled.set()


class Served:
    """A loaded model, the names it answers to, and its queue."""

    def __init__(self, name: str, model, kind: str = "generate", workers: int = 1, queue_size: int = 64):
        self.name = name
        self.names = [name]
        self.model = model
        self.kind = kind  # "generate" or "embed"
        self.queue: queue.Queue[Work | None] = queue.Queue(maxsize=max(1, queue_size))
        self.active: set[Work] = set()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, name=f"serve-{name}-{i}", daemon=True)
                        for i in range(max(1, workers))]
        for t in self.threads:
            t.start()

    def submit(self, work: Work) -> Work:
        try:
            self.queue.put_nowait(work)
        except queue.Full:
            raise QueueFull(self.name) from None
        return work

    def _work(self) -> None:
        while True:
            work = self.queue.get()
            if work is None:  # close(): no more work
                return
            if work.cancelled.is_set():  # its client left, or the server stopped, while it waited
                self._unstarted(work)
                work.emit("end")
                continue
            with self._lock:
                self.active.add(work)
            try:
                work.fn(work)
            except Exception as exc:  # reaches the client as an error in its API's format
                work.emit("error", exc)
            finally:
                with self._lock:
                    self.active.discard(work)
                work.emit("end")

    def load(self) -> dict:
        """Requests running now and waiting in the queue (``/props`` shows them)."""
        with self._lock:
            running = len(self.active)
        with self.queue.mutex:
            waiting = sum(w is not None for w in self.queue.queue)
        return {"running": running, "queued": waiting}

    def _unstarted(self, work: Work) -> None:
        if work.unstarted is not None:
            try:
                work.unstarted(work)
            except Exception as exc:  # noqa: BLE001 - logging a dropped request must not stop a worker
                logging.getLogger("llmlab.serve").warning("could not log a dropped request: %s", exc)

    def end_all(self, exc: Exception) -> None:
        """End every waiting and running request with ``exc``; running generations stop at their next
        step and are logged as interrupted, and waiting ones are left in the queue, cancelled, for the
        workers to log as interrupted calls that never ran (``stop()`` waits for that)."""
        with self.queue.mutex:
            waiting = [w for w in self.queue.queue if w is not None]
        for work in waiting:
            work.cancelled.set()
            work.emit("error", exc)
        with self._lock:
            running = list(self.active)
        for work in running:
            work.emit("error", exc)  # the client hears why before its stream closes
            work.cancelled.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Let the workers finish what they run (so it is logged), then end them; idempotent."""
        if not any(t.is_alive() for t in self.threads):
            return
        for _ in self.threads:
            try:
                self.queue.put(None, timeout=timeout)
            except queue.Full:
                break
        for t in self.threads:
            t.join(timeout)


def run_generation(model: Model, prompt, config) -> Callable[[Work], None]:
    """Work that streams one generation: ``("piece", (text, logprobs))`` then ``("done", (response,
    logprobs))``; the log-probabilities are those of the tokens since the last piece (``config.logprobs``).
    A request dropped before it ran is still logged (``fn.unstarted``), as an interrupted call."""

    def unstarted(work: Work) -> None:
        model.prompt(prompt, config, cancel=work.cancelled).abandon()

    def fn(work: Work) -> None:
        response = model.prompt(prompt, config, cancel=work.cancelled)
        pieces = iter(response)
        sent = 0
        try:
            for piece in pieces:
                work.emit("piece", (piece, response.logprobs[sent:]))
                sent = len(response.logprobs)
        finally:
            pieces.close()  # on cancel: frees the model now and logs the partial answer
        work.emit("done", (response, response.logprobs[sent:]))

    fn.unstarted = unstarted
    return fn


class ServedModels:
    """Every served model by name; built from the ``-m`` / ``-e`` specs of ``llmlab serve``."""

    def __init__(self):
        self.by_name: dict[str, Served] = {}
        self.rag: dict = {}  # a rag model's name -> its RagModel (rag.py); by_name holds its Served

    def add(self, served: Served, *aliases: str) -> None:
        for name in (served.name, *aliases):
            if name in self.by_name and self.by_name[name] is not served:
                raise ConfigError(f"two models are served under the name {name!r}")
            self.by_name[name] = served
            if name not in served.names:
                served.names.append(name)

    def add_rag(self, rag, served: Served, *aliases: str) -> None:
        """Serve ``rag`` (a ``rag.RagModel``) as its name and ``aliases``, through ``served``, the
        model that answers for it (its own name is served only if a plain ``-m`` asked for it)."""
        for name in (rag.name, *aliases):
            if name in self.by_name:
                raise ConfigError(f"two models are served under the name {name!r}")
            self.by_name[name] = served
            self.rag[name] = rag
            served.names.append(name)
        if self.by_name.get(served.name) is not served and served.name in served.names:
            served.names.remove(served.name)

    def get(self, name: str | None, kind: str = "generate", rag: bool = False) -> Served:
        """The model served as ``name``. A rag model's only with ``rag=True``: a caller that would send
        it a prompt without retrieving for it gets a 400 instead of an ungrounded answer."""
        candidates = [s for s in self.unique() if s.kind == kind]
        if not name and len(candidates) == 1 and (rag or set(candidates[0].names) - set(self.rag)):
            return candidates[0]
        served = self.by_name.get(name or "")
        if served is None or served.kind != kind:
            have = ", ".join(n for n, s in self.by_name.items() if s.kind == kind) or "none"
            what = "embedding model" if kind == "embed" else "model"
            raise ModelNotFoundError(f"model {name!r} is not served here (served {what}s: {have})")
        if name in self.rag and not rag:
            raise NotSupportedError(f"model {name} answers questions from a collection: send chat requests "
                                    "(/v1/chat/completions, /api/chat, or /api/generate without raw)")
        return served

    def unique(self) -> list[Served]:
        seen: list[Served] = []
        for s in self.by_name.values():
            if s not in seen:
                seen.append(s)
        return seen

    def end_all(self, exc: Exception) -> None:
        for s in self.unique():
            s.end_all(exc)

    def stop(self) -> None:
        """Wait for every worker to finish what it runs (and log it), then end the workers."""
        for s in self.unique():
            s.stop()

    def close(self) -> None:
        """Stop every worker first (a model must not be freed under a running generation)."""
        self.stop()
        for s in self.unique():
            close = getattr(s.model, "close", None)
            if close:
                close()
