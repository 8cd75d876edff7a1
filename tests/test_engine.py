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

    first = prompt(smollm2, "Write one sentence about the sea, the waves and the wind over the water.")
    second = prompt(smollm2, "Write one sentence about the sea, the waves and the birds over the water.")
    from llmlab.models.llamacpp.engine import block_start

    shared = _common_prefix(first, second)
    assert shared > 32  # the template's system prompt and most of the question
    for slot in range(engine.parallel):
        engine._forget(slot)
    answer(engine, first)
    assert engine.kept == 0
    answer(engine, second)
    assert engine.kept == block_start(shared, engine.n_batch) >= 32  # whole blocks of the shared start


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


def test_task_prompts_answer_the_same_with_the_instruction_cached(engine, smollm2):
    """One instruction, then each review: with the instruction's blocks from the cache the greedy
    labels equal those of prompts evaluated cold (with any cached length they did not: 12 of 60)."""
    import csv
    from pathlib import Path

    from llmlab.tasks import load_task, prompt_for

    task = load_task("sentiment")
    strategy = task.strategy(task.default_strategy)
    film = Path(__file__).resolve().parents[2] / "shared" / "data" / "lesson" / "sentiment_film_data.tsv"
    with film.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))[:24]
    prompts = [smollm2.prompt_ids(prompt_for(smollm2, task, strategy, r["text"])) for r in rows]
    warm = [answer(engine, p)[0] for p in prompts]
    cold_engine = Engine(smollm2, parallel=2, n_ctx_seq=512)
    try:
        cold_engine.reuse_prefix = False
        cold = [answer(cold_engine, p)[0] for p in prompts]
    finally:
        cold_engine.close()
    assert warm == cold
