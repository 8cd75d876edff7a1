"""The serving engine's prompt-prefix reuse: fewer tokens evaluated, the same greedy answers."""

from __future__ import annotations

import pytest

from llmlab.chat import Message
from llmlab.config import GenerationConfig
from llmlab.models.llamacpp.engine import Engine, Job

GREEDY = GenerationConfig(temperature=0, max_new_tokens=24)


def answer(engine: Engine, tokens: list[int]) -> tuple[str, int]:
    job = engine.submit(Job(list(tokens), GREEDY, None))
    text = []
    while True:
        item = job.out.get(timeout=120)
        if isinstance(item, Exception):
            raise item
        text.append(item.text)
        if item.finish_reason:
            return "".join(text), item.usage.completion_tokens


@pytest.fixture(scope="module")
def engine(smollm2):
    eng = Engine(smollm2, parallel=2, n_ctx_seq=512)
    yield eng
    eng.close()


def prompt(smollm2, question: str) -> list[int]:
    return smollm2.encode(smollm2.prompt_text([Message("user", question)]))


def test_a_shared_prefix_is_not_evaluated_again(engine, smollm2):
    from llmlab.models.llamacpp.engine import _common_prefix

    first = prompt(smollm2, "Write one sentence about the sea.")
    second = prompt(smollm2, "Write one sentence about owls.")
    shared = _common_prefix(first, second)
    assert shared > 10  # the template's system prompt and "Write one sentence about"
    evaluated = []
    original = engine._prefill

    def counting(tokens, slot, *cancel):  # _prefill also takes the request's cancel event
        evaluated.append(len(tokens) - min(_common_prefix(engine.cached[slot], tokens), len(tokens) - 1))
        return original(tokens, slot, *cancel)

    engine._prefill = counting
    try:
        for slot in range(engine.parallel):
            engine._forget(slot)
        answer(engine, first)
        answer(engine, second)
    finally:
        engine._prefill = original
    assert evaluated == [len(first), len(second) - shared]


def test_prefix_reuse_keeps_greedy_answers(engine, smollm2):
    questions = ["Write one sentence about the sea.", "Write one sentence about owls.",
                 "Give me a short fact about bees.", "Write one sentence about the sea."]
    warm = [answer(engine, prompt(smollm2, q))[0] for q in questions]
    cold_engine = Engine(smollm2, parallel=2, n_ctx_seq=512)
    try:
        cold_engine.reuse_prefix = False  # every prompt evaluated from scratch
        cold = [answer(cold_engine, prompt(smollm2, q))[0] for q in questions]
    finally:
        cold_engine.close()
    assert warm == cold
    assert warm[0] == warm[3]


def test_a_prompt_equal_to_the_cache_still_gets_fresh_logits(engine, smollm2):
    tokens = prompt(smollm2, "Give me a short fact about bees.")
    once = answer(engine, tokens)
    again = answer(engine, tokens)  # the slot holds the whole prompt (and more): one token re-run
    assert once == again and once[1] > 0
