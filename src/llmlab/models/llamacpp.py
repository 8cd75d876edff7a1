"""GGUF models in-process through llama-cpp-python: the default backend.

Generation drives ``Llama.generate()`` (the token loop under ``create_completion``) so that token
counts are exact, stop strings are held back before they reach the caller, and the KV cache of a
shared prompt prefix is reused between calls (chat turns, few-shot prompts). Greedy decoding is
``temp=0`` (llama.cpp's greedy sampler); min-p and typical sampling are off so that ``top_k``,
``top_p`` and ``temperature`` mean what they mean in transformers.
"""

from __future__ import annotations

import codecs
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

from ..chat import Message
from ..config import GenerationConfig
from ..errors import BackendError, ContextOverflowError, MissingDependencyError, ModelLoadError, PromptError
from .base import Chunk, Model, Token, Usage
from .gguf_meta import check_gguf
from .stops import StopFilter

DEFAULT_MAX_CTX = 8192  # a larger trained window is capped to keep the KV cache small on a laptop


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


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class LlamaCppModel(Model):
    backend = "llamacpp"
    capabilities = frozenset({"score"})

    def __init__(self, path: str | Path, name: str | None = None, n_ctx: int | None = None,
                 n_threads: int | None = None, n_batch: int = 512, **llama_options):
        from .gguf_meta import describe_loaded

        path = Path(path)
        check_gguf(path)
        if n_ctx is None:
            from .gguf_meta import trained_context

            n_ctx = min(trained_context(path) or DEFAULT_MAX_CTX, DEFAULT_MAX_CTX)
        threads = n_threads or default_threads()
        # prompt evaluation has its own thread count, which llama-cpp-python sets to every core:
        # --threads means both, or a busy machine still spins all cores on every prompt
        llama_options.setdefault("n_threads_batch", threads)
        self.llm = open_llama(path, n_ctx=n_ctx, n_threads=threads, n_batch=n_batch, **llama_options)
        super().__init__(describe_loaded(self.llm, path, name or path.name, self.backend))
        import llama_cpp

        from .cpu import cpu_path

        ctx = self.llm.ctx
        self.runtime = {  # read back from llama.cpp where it says; the weight layout is the policy's
            "n_ctx": self.llm.n_ctx(), "n_threads": int(llama_cpp.llama_n_threads(ctx)),
            "n_threads_batch": int(llama_cpp.llama_n_threads_batch(ctx)), "n_batch": self.llm.n_batch,
            "extra_buffer_types": cpu_path().extra_buffer_types}
        self._add_bos = bool(self.info.extra.get("add_bos_token"))
        # Reusing the KV cache of a shared prompt prefix is exact for plain attention, but with a
        # sliding-window cache (Gemma 3) llama.cpp recomputes it differently and seeded runs stop
        # reproducing (measured: 4 of 5 runs differ). Such models start every call from scratch.
        arch = self.info.architecture or ""
        self.reuse_prefix = f"{arch}.attention.sliding_window" not in self.llm.metadata

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

    # --- generation ------------------------------------------------------------------------------

    def stream(self, prompt: str | list[Message], config: GenerationConfig,
               cancel: threading.Event | None = None) -> Iterator[Chunk]:
        import llama_cpp

        tokens = self.prompt_ids(prompt)
        llm = self.llm
        vocab = llm._model.vocab
        llm.set_seed(config.seed if config.seed is not None else random.randrange(2**31))
        if not self.reuse_prefix:
            llm.reset()
        gen = llm.generate(
            tokens, top_k=config.top_k, top_p=config.top_p, min_p=0.0, typical_p=1.0,
            temp=0.0 if config.greedy else float(config.temperature),
            repeat_penalty=config.repeat_penalty, reset=True,
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stop = StopFilter(config.stop)  # holds back what might be the start of a stop string
        n = 0
        finish = "length"
        try:
            for tok in gen:
                if llama_cpp.llama_vocab_is_eog(vocab, tok):
                    finish = "stop"
                    break
                n += 1
                piece = stop.feed(decoder.decode(llm.detokenize([tok])))
                if stop.stopped:
                    finish = "stop"
                    break
                if piece:
                    yield Chunk(piece)
                if n >= config.max_new_tokens:
                    break
                if llm.n_tokens >= llm.n_ctx() - 1:
                    finish = "context"
                    break
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"llama.cpp failed while generating: {exc}") from exc
        finally:
            gen.close()
        held = (piece if stop.stopped else "") + stop.rest(decoder.decode(b"", final=True))
        yield Chunk(held, finish_reason=finish, usage=Usage(len(tokens), n))

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
        ctx_ids = self.prompt_ids(context)
        conts = [llm.tokenize(c.encode("utf-8"), add_bos=False, special=False) for c in continuations]
        longest = max((len(c) for c in conts), default=0)
        if not ctx_ids:
            raise PromptError("cannot score continuations of an empty context")
        if len(ctx_ids) + longest > llm.n_ctx():
            raise ContextOverflowError(len(ctx_ids), longest, llm.n_ctx())
        try:
            last = _log_softmax(self._prefill(ctx_ids))
            scores = []
            for ids in conts:
                total = float(last[ids[0]]) if ids else 0.0
                if len(ids) > 1:
                    rows = self._decode_rows(ids[:-1], len(ctx_ids))
                    total += float(sum(_log_softmax(rows[j])[ids[j + 1]] for j in range(len(ids) - 1)))
                    llm._ctx.kv_cache_seq_rm(-1, len(ctx_ids), -1)
                    # the logits now belong to the continuation: a later generate() must not reuse them
                    llm._requires_eval = True
                scores.append(total)
        except (RuntimeError, ValueError) as exc:
            llm.reset()
            raise BackendError(f"llama.cpp failed while scoring: {exc}") from exc
        return scores

    def _prefill(self, ids: list[int]):
        """Bring the KV cache to exactly ``ids``, reusing the longest cached prefix; last logits."""
        import numpy as np

        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens]
        n = min(len(cached), len(ids))
        differ = np.flatnonzero(cached[:n] != np.asarray(ids[:n], dtype=cached.dtype))
        common = int(differ[0]) if len(differ) else n
        keep = min(common, len(ids) - 1)  # at least one token is decoded, to get fresh logits
        if not getattr(self, "reuse_prefix", True):  # sliding-window caches start from scratch
            keep = 0
        if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.n_tokens = keep
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


def _log_softmax(logits):
    import numpy as np

    x = logits.astype(np.float64)
    top = x.max()
    return x - top - np.log(np.exp(x - top).sum())
