"""Continuous batching for a served GGUF model: many requests decoded together in one llama.cpp context.

One engine thread owns a private llama.cpp context (sharing the loaded weights) with ``parallel``
sequence slots. Each step it admits waiting requests into free slots (in the default, exact mode
their prompts are evaluated one by one), then decodes the next token of every active sequence in a
single ``llama_decode`` batch, so the cost of reading the weights is shared by all of them: that is
where the throughput under concurrent load comes from. A request that is cancelled (its client went
away) leaves its slot at the next step.

Each slot gets its own KV cache stream (``kv_unified = False``), laid out from position 0 exactly as
when the request runs alone. That keeps greedy output identical whatever else is in the batch
(measured: with one unified cache 4 of 8 greedy answers changed in a batch of 8, with split streams
none did). A slot keeps its cells after its request ends; the next request is put in the free slot
sharing the longest prefix with its prompt (the chat template's system prompt, a conversation's
history) and evaluates only the rest, as llama-cpp-python does within its one context. On the
bundled model this prefix reuse saved a quarter of the engine's time under 50 concurrent chats.

In the exact mode prompts are evaluated in blocks that start at fixed positions and only whole
blocks of a cached prefix are kept (``blocks.py`` says why and how).

The context uses flash attention. It made the 50-chat load test 1.2x faster and kept every
concurrent answer equal to the same request alone (without it, prefix reuse left 1 of 50 differing
by rounding); greedy answers can differ from the in-process llamacpp backend, which runs without
flash attention, in later tokens (34 of 50 in the load test). Prompt log-probabilities (``echo``,
what scoring over HTTP uses) are therefore computed on the loaded model's own context instead, and
equal the in-process values exactly (with flash attention they differed by up to 0.3 nats on an
80-token prompt).

Each sequence gets its own sampler from ``sampling.make_sampler`` (the in-process model's, so a
seed means the same), and its tokens go through the shared ``decoding.Decoding`` (stop strings,
limits, hidden control tokens, log-probabilities when the request's config asks for them).

With ``batch_prompts`` (``llmlab serve --batch-prompts``) the engine schedules as llama-server does:
every waiting request is admitted into a free slot at once, keeping any length of cached prefix,
and each step is ONE ``llama_decode`` batch of up to ``n_batch`` tokens holding the next token of
every generating sequence and as many prompt tokens as fit, a long prompt split across steps
(``mixed.py``); a sequence generates once its whole prompt is in. A prompt that could fail the
whole batch (too long, a token outside the vocabulary) is refused before it joins.

How a batch's rows are ordered decides how llama.cpp runs it: over per-slot streams, one forward
pass takes only sequences whose slot ids go up by one in the order they appear (``mixed.slot_order``).
``batch_prompts`` writes its rows in rising slot order, and a new request takes the lowest free slot
of those with the longest cached prefix, so that one step is one pass. The exact mode writes them in
falling order, so that each sequence is a pass of its own, computed as when it runs alone: passes of
several sequences changed 11 of 16 greedy Gemma 3 answers against the same requests alone (SmolLM2's
did not change: whether a pass of several rows computes a row as a pass of one does depends on the
weights' type and the CPU's kernels). That is the exact mode's price. Measured on 2 shared cores
(bench/bench_serve.py, 50 chats, 64 tokens, 8 slots, 2 threads): ``--batch-prompts`` 1.01x, 0.94x and
0.96x of llama-server -np 8 -t 2 in three runs, the exact mode 0.55-0.64x; before ``--batch-prompts`` wrote
its rows in order, 0.72x.

What it gives up: the exact mode stalls every generating sequence while a new prompt is evaluated
alone, and reuses only whole blocks of a cached prefix. ``batch_prompts`` gives up the guarantee
that a greedy answer does not depend on what else ran: where a prompt is cut, and so how its cache
cells are computed, depends on the cache and on the other requests. Measured at temperature 0
on SmolLM2: the 50 chats of bench_serve.py and the 100 sentiment prompts of sentiment_film_data.tsv,
no answer differed from the exact mode's, concurrent or alone (before its rows were ordered, 27 of the
100 did); on Gemma 3, whose weights are computed differently in passes of several rows, answers do
differ with what runs beside them. Cutting prompts at the exact mode's block boundaries, one
block per step, kept every answer equal but was slower than the exact mode, so this mode does not.
"""

from __future__ import annotations

import logging
import queue
import threading

from ...config import GenerationConfig
from ...errors import BackendError
from ..decoding import ByteText, Decoding, token_logprob
from ..events import Chunk, Usage
from .blocks import block_start, blocks, common_prefix
from .lora import apply_lora
from .mixed import fill
from .sampling import logits_row, make_sampler, sample

log = logging.getLogger("llmlab.serve")

class Job:
    """One request inside the engine; its chunks (or an exception) arrive on ``out``, a thread-safe
    queue. Setting ``cancel`` frees its slot at the engine's next step, even during its prompt."""

    def __init__(self, tokens: list[int], config: GenerationConfig, cancel: threading.Event | None = None):
        self.tokens = tokens
        self.config = config
        self.out: queue.Queue = queue.Queue()
        self.cancel = cancel if cancel is not None else threading.Event()


class _Seq:
    def __init__(self, job: Job, slot: int, sampler, decoding: Decoding):
        self.job = job
        self.slot = slot
        self.sampler = sampler
        self.decoding = decoding
        self.pos = 0
        self.last = -1


class Engine:
    def __init__(self, model, parallel: int = 4, n_ctx_seq: int | None = None, n_batch: int = 512,
                 batch_prompts: bool = False):
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
        self.kept = 0  # prompt tokens the last prefill found in its slot (read by tests)
        try:
            self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        except ValueError as exc:
            raise BackendError(f"llama.cpp could not make a context of {params.n_ctx} tokens for "
                               f"{self.parallel} parallel requests: {exc}") from exc
        apply_lora(llm, self.ctx.ctx)  # llama.cpp applies a LoRA per context: this one too
        self.batch = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1, verbose=False)
        self.vocab = llm._model.vocab
        self.n_vocab = llm.n_vocab()
        self.inbox: queue.Queue[Job | None] = queue.Queue()
        self.free = list(range(self.parallel))
        # the tokens whose KV cells each slot still holds, kept after a request ends so that the next
        # prompt sharing a prefix with them (a system prompt, a chat's history) skips that part
        self.cached: list[list[int]] = [[] for _ in range(self.parallel)]
        self.reuse_prefix = model.reuse_prefix  # not for sampling on a sliding-window model (see model.py)
        self.active: list[_Seq] = []
        self.batch_prompts = bool(batch_prompts)
        self.filling: list[_Seq] = []  # batch_prompts: admitted, their prompts not all evaluated yet
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
        admit, step = (self._enter, self._mixed_step) if self.batch_prompts else (self._admit, self._step)
        while True:
            while self.free:
                try:
                    job = self.inbox.get(block=not (self.active or self.filling))
                except queue.Empty:
                    break
                if job is None:
                    return
                admit(job)
            if self.active or self.filling:
                try:
                    step()
                except Exception as exc:  # never leave a waiting request without an answer
                    waiting, self.filling = self.active + self.filling, []
                    for seq in waiting:
                        self._finish(seq, error=BackendError(f"llama.cpp failed while generating: {exc}"))

    def _admit(self, job: Job) -> None:
        if job.cancel.is_set():  # its client left while it waited
            job.out.put(Chunk("", finish_reason="interrupted", usage=Usage(len(job.tokens), 0)))
            return
        slot = self._pick_slot(job.tokens)
        seq = None
        try:
            seq = self._new_seq(job, slot)
            last_index = self._prefill(job.tokens, slot, job.cancel)
            if last_index is None:  # its client left during the prompt
                self._forget(slot)
                job.out.put(Chunk("", finish_reason="interrupted", usage=Usage(len(job.tokens), 0)))
                return
            seq.pos = len(job.tokens)
            self.active.append(seq)
            self._take(seq, last_index)
        except Exception as exc:  # any failure belongs to this request only
            if seq is not None:  # it may have joined the batch already: it leaves it
                if seq in self.active:
                    self.active.remove(seq)
                seq.sampler.close()
            self._forget(slot)
            job.out.put(exc if isinstance(exc, BackendError) else
                        BackendError(f"llama.cpp failed on this request: {exc}"))
        finally:
            if not any(s.slot == slot for s in self.active):
                self._release(slot)

    def _new_seq(self, job: Job, slot: int) -> _Seq:
        decoding = Decoding(job.config, len(job.tokens), ByteText(lambda t: self.llm.detokenize([t])),
                            is_end=self.model.is_end, is_hidden=self.model.is_hidden,
                            room=self.n_ctx_seq - len(job.tokens))
        return _Seq(job, slot, make_sampler(job.config, self.n_vocab, self.llm._model), decoding)

    def _step(self) -> None:
        b = self.batch.batch
        # slots in falling order: llama.cpp then runs each sequence as its own forward pass
        # (mixed.slot_order), so no answer depends on the others (see the module docstring)
        self.active.sort(key=lambda seq: -seq.slot)
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
        """The free slot whose cached tokens share the longest prefix with ``tokens``; of equals, the
        lowest, so that busy slots stay adjacent (a gap in the slot ids costs a ubatch: mixed.slot_order)."""
        best = max(self.free, key=lambda s: (common_prefix(self.cached[s], tokens), -s))
        self.free.remove(best)
        return best

    def _prefill(self, tokens: list[int], slot: int, cancelled: threading.Event | None = None) -> int | None:
        """Evaluate a prompt in one sequence slot; returns the batch index of its last logits, or None
        when ``cancelled`` is set between two batches (a long prompt's client left).

        The slot's cells for a prefix it already holds are kept (at least the last token is evaluated
        again, for fresh logits).
        """
        self._check_length(tokens)
        keep = 0
        if self.reuse_prefix:  # whole blocks only: what is kept was computed as a cold prompt computes it
            keep = block_start(min(common_prefix(self.cached[slot], tokens), len(tokens) - 1), self.n_batch)
        self.kept = keep
        self.ctx.kv_cache_seq_rm(slot, keep, -1)
        self.cached[slot] = list(tokens[:keep])
        b = self.batch.batch
        part: list[int] = []
        for start, end in blocks(keep, len(tokens), self.n_batch):
            if cancelled is not None and cancelled.is_set():
                log.warning("a client left after %d of its prompt's %d tokens were evaluated; "
                            "slot %d is free", start, len(tokens), slot)
                return None
            part = tokens[start:end]
            for i, tok in enumerate(part):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, start + i, 1, False
                b.seq_id[i][0] = slot
            b.logits[len(part) - 1] = True
            b.n_tokens = len(part)
            self.ctx.decode(self.batch)
            self.cached[slot].extend(part)
        return len(part) - 1

    def _check_length(self, tokens: list[int]) -> None:
        if len(tokens) >= self.n_ctx_seq:
            raise BackendError(f"the prompt is {len(tokens)} tokens, beyond the {self.n_ctx_seq}-token "
                               "window of a served request")

    # --- batch_prompts: prompts evaluated in the generations' batches (mixed.py) -----------------

    def _enter(self, job: Job) -> None:
        """Give ``job`` a slot and keep the longest prefix of its prompt that the slot holds; its
        prompt is evaluated by the next steps."""
        if job.cancel.is_set():
            job.out.put(Chunk("", finish_reason="interrupted", usage=Usage(len(job.tokens), 0)))
            return
        try:  # what would fail the whole batch fails this request alone, before it joins
            self._check_length(job.tokens)
            if not job.tokens or not all(0 <= t < self.n_vocab for t in job.tokens):
                raise BackendError("the prompt is empty or holds a token id outside the vocabulary")
        except BackendError as exc:
            job.out.put(exc)
            return
        slot = self._pick_slot(job.tokens)
        try:
            seq = self._new_seq(job, slot)
        except Exception as exc:
            self._release(slot)
            job.out.put(exc if isinstance(exc, BackendError) else
                        BackendError(f"llama.cpp failed on this request: {exc}"))
            return
        keep = 0
        if self.reuse_prefix:  # any length: at least the last token is evaluated again, for its logits
            keep = min(common_prefix(self.cached[slot], job.tokens), len(job.tokens) - 1)
        self.kept = keep
        self.ctx.kv_cache_seq_rm(slot, keep, -1)
        self.cached[slot] = list(job.tokens[:keep])
        seq.pos = keep
        self.filling.append(seq)

    def _mixed_step(self) -> None:
        for seq in [s for s in self.active + self.filling if s.job.cancel.is_set()]:
            if seq in self.filling:
                log.warning("a client left after %d of its prompt's %d tokens were evaluated; slot %d "
                            "is free", seq.pos, len(seq.job.tokens), seq.slot)
                self.filling.remove(seq)
            self._finish(seq, reason="interrupted")
        if not (self.active or self.filling):
            return
        plan = fill(self.batch.batch, self.active, self.filling, self.n_batch)
        try:
            self.ctx.decode(self.batch)
        except RuntimeError as exc:
            for seq, _, _ in plan:
                self.filling = [s for s in self.filling if s is not seq]
                self._finish(seq, error=BackendError(f"llama.cpp failed while generating: {exc}"))
            return
        for seq, tokens, row in plan:
            seq.pos += len(tokens)
            self.cached[seq.slot].extend(tokens)
            if row < 0:
                continue
            if seq in self.filling:  # its whole prompt is in: it generates from now on
                self.filling.remove(seq)
                self.active.append(seq)
            try:
                self._take(seq, row)
            except Exception as exc:  # a failure in one sequence's sampling is its own
                self._finish(seq, error=exc if isinstance(exc, BackendError) else
                             BackendError(f"llama.cpp failed on this request: {exc}"))

    def _take(self, seq: _Seq, index: int) -> None:
        """Sample the next token of ``seq`` from batch row ``index`` and pass on its text."""
        job, config = seq.job, seq.job.config
        if job.cancel.is_set():
            self._finish(seq, reason="interrupted")
            return
        tok = sample(seq.sampler, self.ctx, index)
        lp = None
        if config.logprobs is not None:
            lp = token_logprob(logits_row(self.ctx, index, self.n_vocab), tok, config.logprobs,
                               self.model.token_text)
        chunk = seq.decoding.feed(tok, lp)
        if chunk is not None:
            job.out.put(chunk)
        if seq.decoding.done:
            self._finish(seq)
        else:
            seq.last = tok

    def _finish(self, seq: _Seq, reason: str | None = None, error: Exception | None = None) -> None:
        if seq in self.active:
            self.active.remove(seq)
        seq.sampler.close()
        if error is not None:
            self._forget(seq.slot)
        self._release(seq.slot)
        seq.job.out.put(error if error is not None else seq.decoding.end(reason))

    def _forget(self, slot: int) -> None:
        self.ctx.kv_cache_seq_rm(slot, -1, -1)
        self.cached[slot] = []

    def _release(self, slot: int) -> None:
        if not self.reuse_prefix:
            self._forget(slot)
        if slot not in self.free:
            self.free.append(slot)
