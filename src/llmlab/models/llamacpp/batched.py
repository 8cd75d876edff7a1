"""A GGUF model whose generations run in the continuous-batching engine, behind the usual interface.

``llmlab serve`` wraps each loaded GGUF model in one: generations go to the engine (many requests
decoded together, each in its own sequence slot), while scoring and prompt log-probabilities run on
the loaded model's own context, one at a time under a lock, so they equal in-process values exactly.
"""

from __future__ import annotations

import dataclasses
import threading

from ..base import Model
from .engine import Engine, Job
from .model import LlamaCppModel


class BatchedModel(Model):
    def __init__(self, inner: LlamaCppModel, parallel: int = 4, n_ctx_seq: int | None = None,
                 batch_prompts: bool = False):
        engine = Engine(inner, parallel=parallel, n_ctx_seq=n_ctx_seq, batch_prompts=batch_prompts)
        info = dataclasses.replace(inner.info, extra=dict(inner.info.extra))
        info.context_length = engine.n_ctx_seq
        super().__init__(info)
        self.backend = inner.backend
        self.capabilities = inner.capabilities
        self.inner = inner
        self.engine = engine
        self.load_seconds = inner.load_seconds
        self.logger = inner.logger
        # generations run in the engine's context: each request's window, the slots beside it
        self.runtime = {**inner.runtime, "n_ctx": engine.n_ctx_seq, "parallel": engine.parallel,
                        "batch_prompts": engine.batch_prompts}
        self._lock = threading.Lock()  # the inner model's own context

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(text)

    def token_ids(self, text: str, special: bool) -> list[int]:
        return self.inner.token_ids(text, special)

    def token_text(self, token_id: int) -> str:
        return self.inner.token_text(token_id)

    def tokenize(self, text: str):
        return self.inner.tokenize(text)

    def score(self, context, continuations):
        with self._lock:
            return self.inner.score(context, continuations)

    def score_ids(self, context, continuations):
        with self._lock:
            return self.inner.score_ids(context, continuations)

    def prompt_logprobs(self, text, n_top=0, cancel=None):
        with self._lock:
            return self.inner.prompt_logprobs(text, n_top, cancel)

    def stream(self, prompt, config, cancel=None):
        job = self.engine.submit(Job(self.prompt_ids(prompt), config, cancel))
        finished = False
        try:
            while not finished:
                item = job.out.get()
                if isinstance(item, Exception):
                    raise item
                finished = bool(item.finish_reason)
                yield item
        finally:
            if not finished:  # closed early: the engine drops the sequence at its next step
                job.cancel.set()

    def close(self) -> None:
        self.engine.close()
        self.inner.close()
