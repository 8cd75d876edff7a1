"""Continuous batching for a served GGUF model: many requests decoded together in one llama.cpp context.

One engine thread owns a private llama.cpp context (sharing the loaded weights) with ``parallel``
sequence slots. Each step it admits waiting requests into free slots (their prompts are evaluated
one by one), then decodes the next token of every active sequence in a single ``llama_decode``
batch, so the cost of reading the weights is shared by all of them: that is where the throughput
under concurrent load comes from. A request that is cancelled (its client went away) leaves its
slot at the next step.

Each slot gets its own KV cache stream (``kv_unified = False``), laid out from position 0 exactly as
when the request runs alone. That keeps greedy output identical whatever else is in the batch
(measured: with one unified cache 4 of 8 greedy answers changed in a batch of 8, with split streams
none did). A slot keeps its cells after its request ends; the next request is put in the free slot
sharing the longest prefix with its prompt (the chat template's system prompt, a conversation's
history) and evaluates only the rest, as llama-cpp-python does within its one context. On the
bundled model this prefix reuse saved a quarter of the engine's time under 50 concurrent chats.

The context uses flash attention. It made the 50-chat load test 1.2x faster and kept every
concurrent answer equal to the same request alone (without it, prefix reuse left 1 of 50 differing
by rounding); greedy answers can differ from the in-process llamacpp backend, which runs without
flash attention, in later tokens (34 of 50 in the load test). Prompt log-probabilities (``echo``,
what scoring over HTTP uses) are therefore computed on the loaded model's own context instead, and
equal the in-process values exactly (with flash attention they differed by up to 0.3 nats on an
80-token prompt).

Sampling uses llama.cpp's sampler chain per sequence, built as the llamacpp backend builds it
(repeat penalty, then greedy, or top-k, top-p, temperature and a seeded draw). The engine also
returns log-probabilities of generated tokens (with the top alternatives), which need the logits the
high-level ``Llama`` API does not keep.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import math
import queue
import random
import threading
from dataclasses import dataclass, field

import numpy as np

from ..config import GenerationConfig
from ..errors import BackendError, ContextOverflowError
from ..models.base import Chunk, Usage
from ..models.stops import StopFilter

log = logging.getLogger("llmlab.serve")

PENALTY_LAST_N = 64  # as llama-cpp-python's Llama (last_n_tokens_size)


@dataclass
class TokenLogprob:
    token: str
    logprob: float | None
    top: list[tuple[str, float]] = field(default_factory=list)
    id: int = -1


@dataclass
class LogprobChunk(Chunk):
    """A chunk that also carries the log-probabilities of the tokens produced since the last one."""
    logprobs: list[TokenLogprob] = field(default_factory=list)


class Job:
    """One request inside the engine; results arrive on ``out`` (a thread-safe queue)."""

    def __init__(self, tokens: list[int], config: GenerationConfig | None, top_logprobs: int | None):
        self.tokens = tokens
        self.config = config
        self.top_logprobs = top_logprobs  # None: no log-probabilities; 0: only the chosen token's
        self.out: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()


class _Seq:
    def __init__(self, job: Job, slot: int, sampler):
        self.job = job
        self.slot = slot
        self.sampler = sampler
        self.pos = 0
        self.last = -1
        self.n = 0
        self.stop = StopFilter(job.config.stop)  # holds back what might start a stop string
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending: list[TokenLogprob] = []


def _log_softmax(logits):
    x = logits.astype("float64")
    top = x.max()
    return x - top - math.log(float(np.exp(x - top).sum()))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Engine:
    def __init__(self, model, parallel: int = 4, n_ctx_seq: int | None = None, n_batch: int = 512):
        import llama_cpp
        from llama_cpp import _internals

        self._llama_cpp = llama_cpp
        llm = model.llm
        self.model = model
        self.llm = llm
        self.parallel = max(1, int(parallel))
        self.n_ctx_seq = int(n_ctx_seq or model.info.context_length or 2048)
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_seq_max = self.parallel
        params.n_ctx = self.n_ctx_seq * self.parallel
        params.kv_unified = False
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.n_batch = params.n_ubatch = max(n_batch, self.parallel)
        params.embeddings = False
        self.n_batch = params.n_batch
        try:
            self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        except ValueError as exc:
            raise BackendError(f"llama.cpp could not make a context of {params.n_ctx} tokens for "
                               f"{self.parallel} parallel requests: {exc}") from exc
        self.batch = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1, verbose=False)
        self.vocab = llm._model.vocab
        self.n_vocab = llm.n_vocab()
        self.inbox: queue.Queue[Job | None] = queue.Queue()
        self.free = list(range(self.parallel))
        # the tokens whose KV cells each slot still holds, kept after a request ends so that the next
        # prompt sharing a prefix with them (a system prompt, a chat's history) skips that part
        self.cached: list[list[int]] = [[] for _ in range(self.parallel)]
        self.reuse_prefix = getattr(model, "reuse_prefix", True)  # not with sliding-window caches
        self.active: list[_Seq] = []
        self.thread = threading.Thread(target=self._loop, name=f"engine-{model.info.name}", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Job:
        self.inbox.put(job)
        return job

    def close(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=5)

    # --- the loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            while self.free:
                try:
                    job = self.inbox.get(block=not self.active)
                except queue.Empty:
                    break
                if job is None:
                    return
                self._admit(job)
            if self.active:
                try:
                    self._step()
                except Exception as exc:  # never leave a waiting request without an answer
                    for seq in list(self.active):
                        self._finish(seq, error=BackendError(f"llama.cpp failed while generating: {exc}"))

    def _admit(self, job: Job) -> None:
        if job.cancelled.is_set():  # its client left while it waited
            job.out.put(LogprobChunk("", finish_reason="interrupted", usage=Usage(len(job.tokens), 0)))
            return
        slot = self._pick_slot(job.tokens)
        try:
            seq = _Seq(job, slot, self._sampler(job.config))
            last_index = self._prefill(job.tokens, slot, job.cancelled)
            if last_index is None:  # its client left during the prompt
                self._forget(slot)
                job.out.put(LogprobChunk("", finish_reason="interrupted", usage=Usage(len(job.tokens), 0)))
                return
            seq.pos = len(job.tokens)
            self.active.append(seq)
            self._take(seq, last_index)
        except Exception as exc:  # any failure belongs to this request only
            self._forget(slot)
            job.out.put(exc if isinstance(exc, BackendError) else
                        BackendError(f"llama.cpp failed on this request: {exc}"))
        finally:
            if not any(s.slot == slot for s in self.active):
                self._release(slot)

    def _step(self) -> None:
        b = self.batch.batch
        for i, seq in enumerate(self.active):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = seq.last, seq.pos, 1, True
            b.seq_id[i][0] = seq.slot
        b.n_tokens = len(self.active)
        try:
            self.ctx.decode(self.batch)
        except RuntimeError as exc:
            for seq in list(self.active):
                self._finish(seq, error=BackendError(f"llama.cpp failed while generating: {exc}"))
            return
        for i, seq in enumerate(list(self.active)):
            seq.pos += 1
            self.cached[seq.slot].append(seq.last)
            self._take(seq, i)

    def _pick_slot(self, tokens: list[int]) -> int:
        """The free slot whose cached tokens share the longest prefix with ``tokens``."""
        best = max(self.free, key=lambda s: (_common_prefix(self.cached[s], tokens), s))
        self.free.remove(best)
        return best

    def _prefill(self, tokens: list[int], slot: int, cancelled: threading.Event | None = None) -> int | None:
        """Evaluate a prompt in one sequence slot; returns the batch index of its last logits, or None
        when ``cancelled`` is set between two batches (a long prompt's client left).

        The slot's cells for a prefix it already holds are kept (at least the last token is evaluated
        again, for fresh logits).
        """
        if len(tokens) >= self.n_ctx_seq:
            raise BackendError(f"the prompt is {len(tokens)} tokens, beyond the {self.n_ctx_seq}-token "
                               "window of a served request")
        keep = 0
        if self.reuse_prefix:
            keep = min(_common_prefix(self.cached[slot], tokens), len(tokens) - 1)
        self.ctx.kv_cache_seq_rm(slot, keep, -1)
        self.cached[slot] = list(tokens[:keep])
        b = self.batch.batch
        part: list[int] = []
        for start in range(keep, len(tokens), self.n_batch):
            if cancelled is not None and cancelled.is_set():
                log.warning("a client left after %d of its prompt's %d tokens were evaluated; "
                            "slot %d is free", start, len(tokens), slot)
                return None
            part = tokens[start:start + self.n_batch]
            for i, tok in enumerate(part):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, start + i, 1, False
                b.seq_id[i][0] = slot
            b.logits[len(part) - 1] = True
            b.n_tokens = len(part)
            self.ctx.decode(self.batch)
            self.cached[slot].extend(part)
        return len(part) - 1

    def _take(self, seq: _Seq, index: int) -> None:
        """Sample the next token of ``seq`` from batch row ``index`` and pass on its text."""
        llama_cpp = self._llama_cpp
        job, config = seq.job, seq.job.config
        if job.cancelled.is_set():
            self._finish(seq, reason="interrupted")
            return
        tok = llama_cpp.llama_sampler_sample(seq.sampler.sampler, self.ctx.ctx, index)
        if job.top_logprobs is not None:
            seq.pending.append(self._logprob(index, tok, job.top_logprobs))
        if llama_cpp.llama_vocab_is_eog(self.vocab, tok):
            self._finish(seq, reason="stop")
            return
        seq.n += 1
        seq.last = tok
        piece = seq.stop.feed(seq.decoder.decode(self.llm.detokenize([tok])))
        if seq.stop.stopped:
            self._finish(seq, reason="stop", last=piece)
            return
        if piece or seq.pending:
            job.out.put(LogprobChunk(piece, usage=Usage(0, seq.n), logprobs=seq.pending))
            seq.pending = []
        if seq.n >= config.max_new_tokens:
            self._finish(seq, reason="length")
        elif seq.pos + 1 >= self.n_ctx_seq:
            self._finish(seq, reason="context")

    def _finish(self, seq: _Seq, reason: str = "stop", error: Exception | None = None,
                last: str = "") -> None:
        if seq in self.active:
            self.active.remove(seq)
        seq.sampler.close()
        if error is not None:
            self._forget(seq.slot)
        self._release(seq.slot)
        if error is not None:
            seq.job.out.put(error)
            return
        text = last + seq.stop.rest(seq.decoder.decode(b"", final=True))
        seq.job.out.put(LogprobChunk(text, finish_reason=reason,
                                     usage=Usage(len(seq.job.tokens), seq.n), logprobs=seq.pending))

    def _forget(self, slot: int) -> None:
        self.ctx.kv_cache_seq_rm(slot, -1, -1)
        self.cached[slot] = []

    def _release(self, slot: int) -> None:
        if not self.reuse_prefix:
            self._forget(slot)
        if slot not in self.free:
            self.free.append(slot)

    # --- sampling and log-probabilities ----------------------------------------------------------

    def _sampler(self, config: GenerationConfig):
        from llama_cpp import _internals

        s = _internals.LlamaSampler()
        s.add_penalties(self.n_vocab, PENALTY_LAST_N, config.repeat_penalty, 0.0, 0.0)
        if config.greedy:
            s.add_greedy()
        else:
            s.add_top_k(config.top_k)
            s.add_typical(1.0, 1)
            s.add_top_p(config.top_p, 1)
            s.add_min_p(0.0, 1)
            s.add_temp(float(config.temperature))
            s.add_dist(config.seed if config.seed is not None else random.randrange(2**31))
        return s

    def _row(self, index: int):
        ptr = self._llama_cpp.llama_get_logits_ith(self.ctx.ctx, index)
        return _log_softmax(np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                                  shape=(self.n_vocab,)))

    def _piece(self, tok: int) -> str:
        return self.llm.detokenize([tok], special=True).decode("utf-8", errors="replace")

    def _logprob(self, index: int, tok: int, n_top: int, row=None) -> TokenLogprob:
        row = self._row(index) if row is None else row
        top = []
        if n_top:
            best = np.argpartition(-row, n_top)[:n_top]
            top = [(self._piece(int(t)), float(row[t])) for t in best[np.argsort(-row[best])]]
        return TokenLogprob(self._piece(tok), float(row[tok]), top, tok)

    def exact_prompt_logprobs(self, inner, tokens: list[int], n_top: int,
                              cancelled: threading.Event | None = None) -> list[TokenLogprob]:
        """Log-probability of every prompt token given the ones before it, computed on the loaded
        model's own context (no flash attention), so that ``echo`` gives the same values as scoring
        in process; the engine's flash-attention context differs by up to a few tenths of a nat on
        long prompts. The caller holds the inner model's lock; runs in the caller's thread."""
        llm = inner.llm
        if len(tokens) > llm.n_ctx():
            raise ContextOverflowError(len(tokens), 0, llm.n_ctx())
        out = [TokenLogprob(self._piece(tokens[0]), None, [], tokens[0])]
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        llm.n_tokens = 0
        try:
            for start in range(0, len(tokens), llm.n_batch):
                if cancelled is not None and cancelled.is_set():
                    log.warning("a client left after %d of its prompt's %d tokens were scored; "
                                "the model is free", start, len(tokens))
                    raise BackendError("the client left before the log-probabilities were ready")
                part = tokens[start:start + llm.n_batch]
                rows = inner._decode_rows(part, start)
                for i in range(len(part)):
                    if start + i + 1 < len(tokens):
                        out.append(self._logprob(-1, tokens[start + i + 1], n_top, _log_softmax(rows[i])))
        finally:  # the context now holds this prompt, not what input_ids says: start the next call afresh
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            llm.n_tokens = 0
        return out
