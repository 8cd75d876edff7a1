"""LlamaCppModel.score: the log-likelihoods equal a full evaluation's, and the shared prefix is reused."""

from __future__ import annotations

import pytest

from llmlab import GenerationConfig
from llmlab.chat import Message
from llmlab.errors import ContextOverflowError
from llmlab.models.decoding import log_softmax as _log_softmax
from llmlab.models.llamacpp.loader import open_llama
from llmlab.tasks import continuations, load_task, prompt_for


@pytest.fixture(scope="module")
def reference(smollm2):
    """The same GGUF with logits for every position: the slow, obvious way to score."""
    llm = open_llama(smollm2.info.path, n_ctx=256, logits_all=True)
    yield llm
    llm.close()


def full_eval_logprob(reference, model, context, continuation: str) -> float:
    ctx = model.encode(model.prompt_text(context))
    cont = reference.tokenize(continuation.encode(), add_bos=False, special=False)
    reference.reset()
    reference.eval(ctx + cont)
    rows = reference.scores[: len(ctx) + len(cont)]
    return float(sum(_log_softmax(rows[len(ctx) - 1 + j])[t] for j, t in enumerate(cont)))


def test_score_equals_a_full_evaluation(smollm2, reference):
    task = load_task("topic")
    strategy = task.strategy("zero-shot")
    conts = continuations(smollm2, task, strategy)  # finance and entertainment are several tokens
    context = prompt_for(smollm2, task, strategy, "The striker scored twice in the derby.")
    got = smollm2.score(context, conts)
    want = [full_eval_logprob(reference, smollm2, context, c) for c in conts]
    # one-token labels read the same logits; longer ones differ only by float rounding
    assert got == pytest.approx(want, abs=0.15)
    assert got.index(max(got)) == want.index(max(want))
    raw = "The capital of France is"
    got = smollm2.score(raw, [" Paris", " Berlin, a city"])
    assert got == pytest.approx([full_eval_logprob(reference, smollm2, raw, c)
                                 for c in [" Paris", " Berlin, a city"]], abs=0.15)
    assert got[0] > got[1]


def test_the_shared_prefix_is_evaluated_once(smollm2, monkeypatch):
    task = load_task("sentiment")
    strategy = task.strategy("few-shot")
    conts = continuations(smollm2, task, strategy)
    evaluated = []
    original = smollm2.llm.eval
    monkeypatch.setattr(smollm2.llm, "eval", lambda tokens: (evaluated.append(len(tokens)),
                                                             original(tokens))[1])
    first = prompt_for(smollm2, task, strategy, "A wonderful book.")
    second = prompt_for(smollm2, task, strategy, "A dreadful, boring book.")
    smollm2.score(first, conts)
    smollm2.score(second, conts)
    smollm2.score(second, conts)
    n_first, n_second = smollm2.count_tokens(first), smollm2.count_tokens(second)
    shared = next(i for i, (a, b) in enumerate(zip(smollm2.encode(smollm2.render(first)),
                                                   smollm2.encode(smollm2.render(second)),
                                                   strict=False)) if a != b)
    assert shared > 300  # system message + six worked examples
    assert evaluated[1] == n_second - shared   # only the new text and the template's end
    assert evaluated[2] == 1                  # a repeated prompt replays one token for its logits
    assert evaluated[0] <= n_first


def test_generation_after_scoring_is_unchanged(smollm2):
    chat = [Message("user", "Name a colour.")]
    config = GenerationConfig(temperature=0, max_new_tokens=8)
    smollm2.generate(chat, config)
    cached = smollm2.generate(chat, config).text  # the prompt is cached now: one token is replayed
    # a two-token label is decoded past the prompt and removed again; the logits it leaves behind
    # are the label's, so the next generate must not sample from them
    smollm2.score(chat, ["entertainment"])
    assert smollm2.generate(chat, config).text == cached


def test_score_beyond_the_context_window(smollm2):
    with pytest.raises(ContextOverflowError, match="beyond the context window of 2048"):
        smollm2.score("word " * 2100, [" a"])
