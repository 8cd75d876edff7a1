"""GGUF models in-process through llama-cpp-python: the default backend.

Generation is llmlab's own token loop over llama.cpp's context: the prompt's KV cache is brought to
the prompt reusing the longest cached prefix (chat turns, few-shot prompts, a task's shared
instruction), each token is picked by the sampler chain of ``sampling.py`` (the same as the serving
engine's) and handed to the shared ``Decoding`` (stop strings, limits, control tokens hidden,
log-probabilities when asked for). Greedy decoding is llama.cpp's greedy sampler.

Sliding-window models (Gemma 3) are loaded with a full-size KV cache (``swa_full``): with the
default sliding-window cache llama.cpp cannot keep a prefix, so every call started from scratch and
a few-shot scoring eval ran five times slower than zero-shot. With the full cache, scoring reuses
the prefix; generation still starts from scratch, so that seeded samples reproduce (see
``__init__``). It costs the KV memory of the whole window (for Gemma 3 270M at 8192 tokens, about
150 MB). ``bench/bench_eval.py`` measures it.

A LoRA adapter converted by ``llmlab tune export`` loads on top (``llamacpp/smollm2+ADAPTER.gguf``;
``lora.py`` checks it was made for this base and passes it to llama.cpp as ``lora_path``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from ...chat import Message
from ...config import DEFAULT_MAX_CTX, GenerationConfig, default_threads
from ...errors import BackendError, ContextOverflowError, PromptError
from ..base import Chunk, Model, Token, TokenLogprob
from ..decoding import MODALITY_MARKERS, ByteText, Decoding, log_softmax, token_logprob
from .gguf import check_gguf, describe_loaded, trained_context
from .loader import open_llama
from .lora import check_applied, check_lora
from .sampling import logits_row, make_sampler, sample

# llama.cpp token attributes that never stand for text (llama_cpp.LLAMA_TOKEN_ATTR_*)
_UNKNOWN, _UNUSED, _CONTROL = 1, 2, 8


class LlamaCppModel(Model):
    backend = "llamacpp"
    capabilities = frozenset({"score", "logprobs", "echo", "grammar"})

    def __init__(self, path: str | Path, name: str | None = None, n_ctx: int | None = None,
                 n_threads: int | None = None, n_batch: int = 512, adapter: str | Path | None = None,
                 **llama_options):
        path = Path(path)
        check_gguf(path)
        if adapter is not None:  # a LoRA GGUF from llmlab tune export, checked before the weights load
            adapter = check_lora(Path(adapter).expanduser(), path)
            llama_options["lora_path"] = str(adapter)
        if n_ctx is None:
            n_ctx = min(trained_context(path) or DEFAULT_MAX_CTX, DEFAULT_MAX_CTX)
        threads = n_threads or default_threads()
        # prompt evaluation has its own thread count, which llama-cpp-python sets to every core:
        # --threads means both, or a busy machine still spins all cores on every prompt
        llama_options.setdefault("n_threads_batch", threads)
        # a full-size cache for sliding-window layers, so a shared prefix can be kept (see above);
        # a model without such layers is unaffected
        llama_options.setdefault("swa_full", True)
        self.llm = open_llama(path, n_ctx=n_ctx, n_threads=threads, n_batch=n_batch, **llama_options)
        if adapter is not None:
            check_applied(self.llm, adapter, path)
        super().__init__(describe_loaded(self.llm, path, name or path.name, self.backend))
        if adapter is not None:
            from ..adapters import base_sha256

            self.info.extra.update(adapter=str(adapter), adapter_sha256=base_sha256(adapter))
        import llama_cpp

        from .cpu import cpu_path

        ctx = self.llm.ctx
        self.runtime = {  # read back from llama.cpp where it says; the weight layout is the policy's
            "n_ctx": self.llm.n_ctx(), "n_threads": int(llama_cpp.llama_n_threads(ctx)),
            "n_threads_batch": int(llama_cpp.llama_n_threads_batch(ctx)), "n_batch": self.llm.n_batch,
            "extra_buffer_types": cpu_path().extra_buffer_types}
        self._add_bos = bool(self.info.extra.get("add_bos_token"))
        arch = self.info.architecture or ""
        sliding = f"{arch}.attention.sliding_window" in self.llm.metadata
        # Generation: a sliding-window model starts every call from scratch. With llama.cpp's small
        # sliding-window cache a kept prefix cannot be reused at all; with the full-size cache it can,
        # but the prompt's last token is then evaluated alone rather than in the prompt's batch, its
        # logits differ in the last bits, and seeded samples stop reproducing (measured on Gemma 3).
        # Scoring does not sample, so it reuses the prefix when the cache is full-size: few-shot
        # scoring keeps its shared examples in the cache (see bench/RESULTS.md).
        self.reuse_prefix = not sliding
        swa_full = bool(self.llm.context_params.swa_full)
        self.reuse_scoring_prefix = not sliding or swa_full
        self.runtime["swa_full"] = swa_full if sliding else None
        self._hidden: dict[int, bool] = {}
        self.kept_tokens = 0

    # --- tokens ----------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        # A template that already writes the BOS token must not get a second one.
        add_bos = self._add_bos and not (self.info.bos_token and text.startswith(self.info.bos_token))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def token_ids(self, text: str, special: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special) if text else []

    def tokenize(self, text: str) -> list[Token]:
        ids = self.token_ids(text, special=False)
        return [Token(i, self.token_text(i)) for i in ids]

    def token_text(self, token_id: int) -> str:
        return self.llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def is_end(self, token_id: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token_id))

    def is_hidden(self, token_id: int) -> bool:
        """A token that is never text: a control token, or a placeholder of an image or audio input."""
        hidden = self._hidden.get(token_id)
        if hidden is None:
            import llama_cpp

            attr = int(llama_cpp.llama_vocab_get_attr(self.llm._model.vocab, token_id))
            hidden = bool(attr & (_UNKNOWN | _UNUSED | _CONTROL)) or bool(
                MODALITY_MARKERS.fullmatch(self.token_text(token_id)))
            self._hidden[token_id] = hidden
        return hidden

    # --- generation ------------------------------------------------------------------------------

    def stream(self, prompt: str | list[Message], config: GenerationConfig,
               cancel: threading.Event | None = None) -> Iterator[Chunk]:
        tokens = self.prompt_ids(prompt)
        llm = self.llm
        n_vocab = llm.n_vocab()
        if len(tokens) >= llm.n_ctx():
            raise ContextOverflowError(len(tokens), config.max_new_tokens, llm.n_ctx())
        decoding = Decoding(config, len(tokens), ByteText(lambda t: llm.detokenize([t])),
                            is_end=self.is_end, is_hidden=self.is_hidden, room=llm.n_ctx() - len(tokens))
        sampler = make_sampler(config, n_vocab, llm._model)
        reason = None
        try:
            self._prefill(tokens, self.reuse_prefix)
            while True:
                if cancel is not None and cancel.is_set():
                    reason = "interrupted"
                    break
                tok = sample(sampler, llm._ctx, -1)
                lp = None
                if config.logprobs is not None:
                    row = logits_row(llm._ctx, -1, n_vocab)
                    lp = token_logprob(row, tok, config.logprobs, self.token_text)
                chunk = decoding.feed(tok, lp)
                if chunk is not None:
                    yield chunk
                if decoding.done:
                    break
                llm.eval([tok])
        except (RuntimeError, ValueError) as exc:
            llm.reset()
            raise BackendError(f"llama.cpp failed while generating: {exc}") from exc
        finally:
            sampler.close()
        yield decoding.end(reason)

    def prompt_logprobs(self, text: str, n_top: int = 0, cancel: threading.Event | None = None
                        ) -> list[TokenLogprob]:
        """Log-probability of every token of ``text`` given the ones before it (``echo``), in
        batches of ``n_batch`` tokens; stops at the next batch once ``cancel`` is set. The BOS the
        model adds is not part of the text, so it is left out."""
        import logging

        llm = self.llm
        tokens = self.encode(text)
        if len(tokens) > llm.n_ctx():
            raise ContextOverflowError(len(tokens), 0, llm.n_ctx())
        out = [TokenLogprob(self.token_text(tokens[0]), None, [], tokens[0])]
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        llm.n_tokens = 0
        try:
            for start in range(0, len(tokens), llm.n_batch):
                if cancel is not None and cancel.is_set():
                    logging.getLogger("llmlab.serve").warning(
                        "a client left after %d of its prompt's %d tokens were scored; the model is free",
                        start, len(tokens))
                    raise BackendError("the client left before the log-probabilities were ready")
                part = tokens[start:start + llm.n_batch]
                rows = self._decode_rows(part, start)
                for i in range(len(part)):
                    if start + i + 1 < len(tokens):
                        out.append(token_logprob(log_softmax(rows[i]), tokens[start + i + 1], n_top,
                                                 self.token_text))
        finally:  # the context holds this prompt, not what input_ids says: start the next call afresh
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            llm.n_tokens = 0
        bos = self.info.bos_token
        if len(out) > 1 and bos and out[0].token == bos and not text.startswith(bos):
            out = out[1:]
        return out

    # --- scoring ---------------------------------------------------------------------------------

    def score(self, context: str | list[Message], continuations: list[str]) -> list[float]:
        """Log-probability of each continuation after the context (natural log, summed over tokens).

        The context is evaluated once, and only the part that differs from what is already in the
        KV cache (so a task's shared prefix -- system message, few-shot examples, instruction -- is
        computed once for a whole dataset). A one-token continuation costs nothing beyond that: its
        log-probability is read from the context's last logits. A longer one costs one small decode
        of its own tokens, which is then removed from the cache. Continuations are tokenized on
        their own, so a raw-text context wants them to start with a space.
        """
        llm = self.llm
        return self.score_ids(self.prompt_ids(context),
                              [llm.tokenize(c.encode("utf-8"), add_bos=False, special=False)
                               for c in continuations])

    def score_ids(self, context: list[int], continuations: list[list[int]]) -> list[float]:
        llm, ctx_ids, conts = self.llm, list(context), continuations
        longest = max((len(c) for c in conts), default=0)
        if not ctx_ids:
            raise PromptError("cannot score continuations of an empty context")
        if len(ctx_ids) + longest > llm.n_ctx():
            raise ContextOverflowError(len(ctx_ids), longest, llm.n_ctx())
        try:
            last = log_softmax(self._prefill(ctx_ids, self.reuse_scoring_prefix))
            scores = []
            for ids in conts:
                total = float(last[ids[0]]) if ids else 0.0
                if len(ids) > 1:
                    rows = self._decode_rows(ids[:-1], len(ctx_ids))
                    total += float(sum(log_softmax(rows[j])[ids[j + 1]] for j in range(len(ids) - 1)))
                    llm._ctx.kv_cache_seq_rm(-1, len(ctx_ids), -1)
                scores.append(total)
        except (RuntimeError, ValueError) as exc:
            llm.reset()
            raise BackendError(f"llama.cpp failed while scoring: {exc}") from exc
        return scores

    def _prefill(self, ids: list[int], reuse: bool = True):
        """Bring the KV cache to exactly ``ids``, reusing the longest cached prefix (with ``reuse``);
        the last token's logits."""
        import numpy as np

        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens]
        n = min(len(cached), len(ids))
        differ = np.flatnonzero(cached[:n] != np.asarray(ids[:n], dtype=cached.dtype))
        common = int(differ[0]) if len(differ) else n
        keep = min(common, len(ids) - 1)  # at least one token is decoded, to get fresh logits
        if not reuse:
            keep = 0
        self.kept_tokens = 0  # how much of this prompt the cache already held (read by tests, bench)
        if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.n_tokens = self.kept_tokens = keep
        else:
            llm.reset()
        llm.eval(ids[llm.n_tokens:])  # logits are kept for the last token only
        return np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))

    def _decode_rows(self, ids: list[int], pos: int):
        """Decode ``ids`` at positions ``pos...`` with logits for every one; (len(ids), n_vocab)."""
        import numpy as np

        llm = self.llm
        if len(ids) > llm.n_batch:
            raise PromptError(f"a continuation of {len(ids) + 1} tokens is longer than the batch size")
        llm._batch.set_batch(batch=ids, n_past=pos, logits_all=True)
        llm._ctx.decode(llm._batch)
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(ids), llm.n_vocab()))

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
