"""Models through Hugging Face transformers: a GGUF file (dequantized to float32) or a model directory.

This backend is for looking inside a model in PyTorch (log-probabilities, hidden states, fine-tuning)
with the same bundled GGUF files the llamacpp backend runs. Where the weights, tokenizer and model card
come from (a GGUF file, a model directory, or a copy of a loaded base) is ``hf_load.py``. Chats are
rendered by the shared Jinja template, so both backends see the same ids and stop at the same tokens;
``encode`` is tested to agree with llama.cpp on both bundled models.

Generation is a plain decode loop over the KV cache, not ``model.generate`` in a thread: each token is
picked with transformers' own logits processors (repetition penalty, temperature, top-k, top-p, in
``generate``'s order), so a setting means what it means there, while token counts are exact, stop
strings are held back, a seed drives a private ``torch.Generator`` (the global RNG is untouched), and
closing the stream stops before the next forward pass. ``bench/bench_hf.py`` checks it keeps up with
``model.generate``. A ``json_schema`` adds one processor in front of the others, llguidance's mask of
the tokens its grammar allows next (``hf_grammar.py``).

What it gives up: CPU only, batch size one, no beam search; GGUF weights are dequantized, so a model
takes four to six times its file's size in memory, and loading Gemma's 262k-token vocabulary from its
GGUF takes tens of seconds.

A LoRA adapter made by ``llmlab tune`` loads on top (``hf/smollm2+ADAPTER_DIR``; ``adapters.py``
checks it was made for this base and wraps the model in peft's ``PeftModel``). ``weights_from=BASE``
puts it on a copy of a loaded base instead of a second conversion of the file.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Iterator
from pathlib import Path

from ..chat import Message, check_prompt
from ..checks import whole_number
from ..config import DEFAULT_MAX_CTX, GenerationConfig, default_threads
from ..errors import (
    BackendError,
    ConfigError,
    ContextOverflowError,
    PromptError,
)
from .adapters import adapter_sha256, check_adapter, with_adapter
from .base import Chunk, Model, Token
from .decoding import MODALITY_MARKERS, Decoding, token_logprob
from .hf_load import import_torch, load_card, load_weights


class HFModel(Model):
    backend = "hf"
    capabilities = frozenset({"score", "logprobs", "grammar"})

    def __init__(self, path: str | Path, name: str | None = None, n_ctx: int | None = None,
                 n_threads: int | None = None, dtype: str = "float32", verbose: bool = False,
                 adapter: str | Path | None = None, weights_from: HFModel | None = None, **hf_options):
        if n_ctx is not None:
            whole_number("n_ctx", n_ctx, least=2)
        if n_threads is not None:
            whole_number("n_threads", n_threads)
        path = Path(path)
        name = name or path.name
        card, eog = load_card(path, name, dtype, weights_from)
        if adapter is not None:  # refused before the weights load
            adapter = check_adapter(Path(adapter).expanduser(), path)
        torch, _ = import_torch()
        if not isinstance(getattr(torch, str(dtype), None), torch.dtype):
            raise ConfigError(f"dtype must be a torch dtype name such as 'float32', got {dtype!r}")
        # torch defaults to the physical cores it sees, which in a container can be more than this
        # process may use; more threads than free cores make every step wait on a descheduled one
        threads = n_threads or min(torch.get_num_threads(), default_threads())
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self._torch = torch
        self.tokenizer, self.model, info = load_weights(path, name, getattr(torch, dtype), card, verbose,
                                                        hf_options, weights_from)
        if adapter is not None:
            self.model = with_adapter(self.model, adapter)
            info.extra.update(adapter=str(adapter), adapter_sha256=adapter_sha256(adapter))
        trained = info.trained_context_length
        info.context_length = n_ctx or min(trained or DEFAULT_MAX_CTX, DEFAULT_MAX_CTX)
        super().__init__(info)
        self.runtime = {"n_ctx": info.context_length, "n_threads": torch.get_num_threads(),
                        "dtype": str(dtype)}
        tok = self.tokenizer
        self._bos_id = (tok.convert_tokens_to_ids(info.bos_token) if info.bos_token else tok.bos_token_id)
        if not info.extra.get("add_bos_token"):
            self._bos_id = None
        if eog is None:  # a directory: the ids its generation config ends on
            eos = self.model.generation_config.eos_token_id
            eog = {*(eos if isinstance(eos, list) else [eos]), tok.eos_token_id} - {None}
        self._eog = frozenset(eog)
        self._special = frozenset(tok.all_special_ids)
        self._grammars = None  # compiled JSON-schema grammars for this tokenizer, made when first asked

    # --- tokens ----------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        # Special tokens written in the text (from a chat template) are parsed as special, as in
        # llama.cpp; a template that already writes the BOS token must not get a second one.
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self._bos_id is not None and not (self.info.bos_token and text.startswith(self.info.bos_token)):
            ids = [self._bos_id, *ids]
        return ids

    def token_ids(self, text: str, special: bool) -> list[int]:
        """Nothing added; with ``special`` False control-token text stays text (llama.cpp's special=False)."""
        if not text:
            return []
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=not special)["input_ids"]

    def tokenize(self, text: str) -> list[Token]:
        return [Token(i, self.token_text(i)) for i in self.token_ids(text, special=False)]

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    # --- generation ------------------------------------------------------------------------------

    def stream(self, prompt: str | list[Message], config: GenerationConfig,
               cancel: threading.Event | None = None) -> Iterator[Chunk]:
        ids = self.prompt_ids(prompt)
        room = self.info.context_length - len(ids)
        if room < 1:
            raise ContextOverflowError(len(ids), config.max_new_tokens, self.info.context_length)
        decoding = Decoding(config, len(ids), _TextDelta(self.tokenizer), is_end=self._eog.__contains__,
                            is_hidden=self.is_hidden, room=room)
        steps = self._tokens(ids, min(config.max_new_tokens, room), config)
        reason = None
        try:
            for tok, row in steps:
                if cancel is not None and cancel.is_set():
                    reason = "interrupted"
                    break
                lp = None if row is None else token_logprob(row, tok, config.logprobs, self.token_text)
                chunk = decoding.feed(tok, lp)
                if chunk is not None:
                    yield chunk
                if decoding.done:
                    break
        except RuntimeError as exc:
            raise BackendError(f"transformers failed while generating: {exc}") from exc
        finally:
            steps.close()
        yield decoding.end(reason)

    def is_hidden(self, token_id: int) -> bool:
        """A token that is never text: one the tokenizer calls special, or a modality placeholder."""
        return token_id in self._special or bool(MODALITY_MARKERS.fullmatch(self.token_text(token_id)))

    def _tokens(self, ids: list[int], budget: int, config: GenerationConfig) -> Iterator[tuple]:
        """Up to ``budget`` (next-token id, its log-softmax row or None), one forward pass each,
        computed only when asked for; the row (of the model's own logits) only when
        ``config.logprobs`` asks for log-probabilities.

        Inference mode is entered per step, never across a ``yield``: it is thread-local state and
        would otherwise leak into the caller's code while the stream is paused.
        """
        torch = self._torch
        pick = self._picker(config)
        seq = torch.tensor([ids])
        new, cache = seq, None
        for _ in range(budget):
            with torch.inference_mode():
                out = self.model(input_ids=new, use_cache=True, logits_to_keep=1, **_cache_kw(cache))
                cache = _cache_of(out)
                logits = out.logits[:, -1, :].float()
                row = None if config.logprobs is None else logits[0].log_softmax(dim=-1).double().numpy()
                new = pick(seq, logits)
                seq = torch.cat([seq, new], dim=-1)
            yield int(new), row

    def _picker(self, config: GenerationConfig):
        """``pick(sequence, logits) -> [[token id]]`` for a config, as ``model.generate`` would pick."""
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        torch = self._torch
        procs = LogitsProcessorList()
        if config.json_schema is not None:  # first, so every later processor sees only allowed tokens
            procs.append(self._grammar_mask(config.json_schema))
        if config.repeat_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(config.repeat_penalty))
        if config.greedy:
            return lambda seq, logits: procs(seq, logits).argmax(dim=-1, keepdim=True)
        if config.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k:
            procs.append(TopKLogitsWarper(config.top_k))
        if config.top_p < 1.0:
            procs.append(TopPLogitsWarper(config.top_p))
        gen = torch.Generator()
        if config.seed is None:
            gen.seed()  # a fresh Generator has a fixed seed; unseeded sampling should vary
        else:
            gen.manual_seed(config.seed)
        return lambda seq, logits: torch.multinomial(procs(seq, logits).softmax(dim=-1), 1, generator=gen)

    def _grammar_mask(self, schema: dict):
        from .hf_grammar import Grammars

        if self._grammars is None:
            n_vocab = self.model.get_output_embeddings().weight.shape[0]  # the logits' width
            self._grammars = Grammars(self.tokenizer, n_vocab, self._eog)
        return self._grammars.mask(schema)

    # --- scoring ---------------------------------------------------------------------------------

    def score(self, context: str | list[Message], continuations: list[str]) -> list[float]:
        """Summed log-probability of each continuation's tokens after the context.

        A continuation is tokenized on its own, as in the llamacpp backend, so a word after a raw
        text context carries its own leading space (``" Paris"``). The context is run once and its
        KV cache copied for each continuation; a one-token continuation is read from the
        context's last logits, and a lone continuation goes in one pass with its context.
        """
        check_prompt(context)
        return self.score_ids(self.prompt_ids(context),
                              [self.token_ids(c, special=False) for c in continuations])

    def score_ids(self, context: list[int], continuations: list[list[int]]) -> list[float]:
        torch = self._torch
        ctx, conts = list(context), continuations
        longest = max(map(len, conts), default=0)
        if not ctx:
            raise PromptError("cannot score continuations of an empty context")
        if len(ctx) + longest > self.info.context_length:
            raise ContextOverflowError(len(ctx), longest, self.info.context_length)
        scores = []
        try:
            with torch.inference_mode():
                if len(conts) == 1 and len(conts[0]) > 1:  # one pass over context and continuation
                    cont = conts[0]
                    out = self.model(input_ids=torch.tensor([ctx + cont[:-1]]), logits_to_keep=len(cont))
                    logp = out.logits[0].float().log_softmax(dim=-1)
                    return [float(logp.gather(1, torch.tensor(cont)[:, None]).sum())]
                out = self.model(input_ids=torch.tensor([ctx]), use_cache=True, logits_to_keep=1)
                first = out.logits[0, -1].float().log_softmax(dim=-1)
                for cont in conts:
                    if not cont:
                        scores.append(0.0)
                        continue
                    total = first[cont[0]]
                    if len(cont) > 1:
                        rest = self.model(input_ids=torch.tensor([cont[:-1]]), use_cache=True,
                                          **_cache_kw(copy.deepcopy(_cache_of(out))))
                        logp = rest.logits[0].float().log_softmax(dim=-1)
                        total = total + logp.gather(1, torch.tensor(cont[1:])[:, None]).sum()
                    scores.append(float(total))
        except RuntimeError as exc:
            raise BackendError(f"transformers failed while scoring: {exc}") from exc
        return scores

    def close(self) -> None:
        self.model = self.tokenizer = None


class _TextDelta:
    """The text each new token adds, decoded in context.

    A token decoded alone can be half a UTF-8 character or lose a SentencePiece space, so the
    last shown token and the new ones are decoded together and only the difference is returned
    (the prefix-offset method of text-generation-inference and vLLM).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = self.read = 0  # ids[prefix:read] is the context of what is already shown

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        shown = self._decode(self.ids[self.prefix:self.read])
        now = self._decode(self.ids[self.prefix:])
        if len(now) > len(shown) and not now.endswith("\ufffd"):  # not mid-character
            self.prefix, self.read = self.read, len(self.ids)
            return now[len(shown):]
        return ""

    def flush(self) -> str:
        """Whatever is still held back at the end (an incomplete character comes out as U+FFFD)."""
        shown = self._decode(self.ids[self.prefix:self.read])
        return self._decode(self.ids[self.prefix:])[len(shown):]


def _cache_kw(cache) -> dict:
    """The keyword a model's forward takes its KV cache by: ``cache`` in recent transformers (which
    warns about ``past_key_values``), ``past_key_values`` before."""
    return {_cache_name(): cache}


@functools.cache
def _cache_name() -> str:
    import inspect

    from transformers.models.llama.modeling_llama import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def _cache_of(out):
    return getattr(out, "cache", None) if hasattr(out, "cache") else out.past_key_values
