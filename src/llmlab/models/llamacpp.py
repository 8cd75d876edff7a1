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
from collections.abc import Iterator
from pathlib import Path

from ..chat import Message
from ..config import GenerationConfig
from ..errors import BackendError, MissingDependencyError, ModelLoadError
from .base import Chunk, Model, Token, Usage, check_gguf

DEFAULT_MAX_CTX = 8192  # a larger trained window is capped to keep the KV cache small on a laptop


def open_llama(path: Path, **options):
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise MissingDependencyError("llama-cpp-python", "all") from exc
    from llama_cpp._utils import suppress_stdout_stderr

    options.setdefault("verbose", False)
    try:
        # llama.cpp writes load chatter straight to the C stderr, past verbose=False
        with suppress_stdout_stderr(disable=options["verbose"]):
            return Llama(str(path), **options)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from exc


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class LlamaCppModel(Model):
    backend = "llamacpp"
    can_score = True

    def __init__(self, path: str | Path, name: str | None = None, n_ctx: int | None = None,
                 n_threads: int | None = None, n_batch: int = 512, **llama_options):
        from .gguf_meta import describe_loaded

        path = Path(path)
        check_gguf(path)
        if n_ctx is None:
            # the trained window is in the header; a vocab-only load reads it in milliseconds
            probe = open_llama(path, vocab_only=True)
            arch = probe.metadata.get("general.architecture", "")
            trained = int(probe.metadata.get(f"{arch}.context_length", 0) or 0)
            probe.close()
            n_ctx = min(trained or DEFAULT_MAX_CTX, DEFAULT_MAX_CTX)
        self.llm = open_llama(path, n_ctx=n_ctx, n_threads=n_threads or default_threads(),
                              n_batch=n_batch, **llama_options)
        super().__init__(describe_loaded(self.llm, path, name or path.name, self.backend))
        self._add_bos = bool(self.info.extra.get("add_bos_token"))

    # --- tokens ----------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        # A template that already writes the BOS token must not get a second one.
        add_bos = self._add_bos and not (self.info.bos_token and text.startswith(self.info.bos_token))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def tokenize(self, text: str) -> list[Token]:
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return [Token(i, self.llm.detokenize([i]).decode("utf-8", errors="replace")) for i in ids]

    # --- generation ------------------------------------------------------------------------------

    def stream(self, prompt: str | list[Message], config: GenerationConfig) -> Iterator[Chunk]:
        import llama_cpp

        tokens = self.encode(self.prompt_text(prompt))
        llm = self.llm
        vocab = llm._model.vocab
        llm.set_seed(config.seed if config.seed is not None else random.randrange(2**31))
        gen = llm.generate(
            tokens, top_k=config.top_k, top_p=config.top_p, min_p=0.0, typical_p=1.0,
            temp=0.0 if config.greedy else float(config.temperature),
            repeat_penalty=config.repeat_penalty, reset=True,
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = config.stop
        held = ""  # text that might be the start of a stop string, not yet shown
        n = 0
        finish = "length"
        try:
            for tok in gen:
                if llama_cpp.llama_vocab_is_eog(vocab, tok):
                    finish = "stop"
                    break
                n += 1
                held += decoder.decode(llm.detokenize([tok]))
                if stops:
                    cut = _find_stop(held, stops)
                    if cut is not None:
                        held = held[:cut]
                        finish = "stop"
                        break
                    safe = len(held) - _partial_stop(held, stops)
                    if safe > 0:
                        yield Chunk(held[:safe])
                        held = held[safe:]
                elif held:
                    yield Chunk(held)
                    held = ""
                if n >= config.max_new_tokens:
                    break
                if llm.n_tokens >= llm.n_ctx() - 1:
                    finish = "context"
                    break
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"llama.cpp failed while generating: {exc}") from exc
        finally:
            gen.close()
        held += decoder.decode(b"", final=True)
        yield Chunk(held, finish_reason=finish, usage=Usage(len(tokens), n))

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None


def _find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [text.find(s) for s in stops if s in text]
    return min(hits) if hits else None


def _partial_stop(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best
