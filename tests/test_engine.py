"""The serving engine: prompt-prefix reuse (fewer tokens evaluated, the same greedy answers), and the
``batch_prompts`` mode (``llmlab serve --batch-prompts``): concurrent answers, cancellation during a
prompt, one bad request among good ones, the flag from the command line to the engine."""

from __future__ import annotations

import threading

import pytest

from llmlab.chat import Message
from llmlab.config import GenerationConfig
from llmlab.models.llamacpp.blocks import common_prefix
from llmlab.models.llamacpp.engine import Engine, Job

GREEDY = GenerationConfig(temperature=0, max_new_tokens=24)


def collect(job: Job):
    """A job's text and last chunk, or the exception it ended with."""
    text = []
    while True:
        item = job.out.get(timeout=120)
        if isinstance(item, Exception):
            return item
        text.append(item.text)
        if item.finish_reason:
            return "".join(text), item


def answer(engine: Engine, tokens: list[int]) -> tuple[str, int]:
    got = collect(engine.submit(Job(list(tokens), GREEDY, None)))
    if isinstance(got, Exception):
        raise got
    text, last = got
    return text, last.usage.completion_tokens


@pytest.fixture(scope="module")
def engine(smollm2):
    eng = Engine(smollm2, parallel=2, n_ctx_seq=512)
    yield eng
    eng.close()


def prompt(smollm2, question: str) -> list[int]:
    return smollm2.encode(smollm2.prompt_text([Message("user", question)]))


def test_a_shared_prefix_is_not_evaluated_again(engine, smollm2):
    first = prompt(smollm2, "Write one sentence about the sea, the waves and the wind over the water.")
    second = prompt(smollm2, "Write one sentence about the sea, the waves and the birds over the water.")
    from llmlab.models.llamacpp.blocks import block_start

    shared = common_prefix(first, second)
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



def test_concurrent_answers_equal_the_same_requests_alone_on_gemma(gemma):
    """The exact mode's guarantee on a model whose rows come out differently in a pass of several
    (Gemma 3's Q4_K weights): computed in one pass, 11 of 16 such answers changed."""
    engine = Engine(gemma, parallel=4, n_ctx_seq=256)
    try:
        config = GenerationConfig(temperature=0, max_new_tokens=24)
        prompts = [gemma.encode(f"Here is a short story about {t}. Once upon a time")
                   for t in ("the sea", "bees", "owls", "volcanoes", "trains", "the moon", "coffee", "rain")]
        together = [collect(j) for j in [engine.submit(Job(list(p), config)) for p in prompts]]
        alone = [collect(engine.submit(Job(list(p), config))) for p in prompts]
    finally:
        engine.close()
    assert [t[0] for t in together] == [a[0] for a in alone]

# --- batch_prompts: prompts evaluated in the generations' batches (llmlab serve --batch-prompts) ---

SHORT = GenerationConfig(temperature=0, max_new_tokens=8)
QUESTIONS = ["Write one sentence about the sea.", "Give me a short fact about bees.",
             "Write one sentence about owls.", "Give me a short fact about volcanoes.",
             "Write one sentence about trains.", "Give me a short fact about the moon."]


@pytest.fixture(scope="module")
def mixed(smollm2):
    """The batch_prompts engine, with a small batch so that a longer prompt takes several steps."""
    eng = Engine(smollm2, parallel=3, n_ctx_seq=512, n_batch=64, batch_prompts=True)
    yield eng
    eng.close()


class CancelAfter(threading.Event):
    """A cancel flag that sets itself once the engine has looked at it ``n`` times: a client that
    leaves at a known point, with no sleeps."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def is_set(self) -> bool:
        self.n -= 1
        if self.n < 0:
            self.set()
        return super().is_set()


def test_batched_prompts_answer_concurrent_requests(mixed, engine, smollm2):
    """Six requests for three slots at once: each answer is its own, and one alone equals the exact
    mode's answer (with other prompts beside it a greedy answer may change; see engine.py)."""
    prompts = [prompt(smollm2, q) for q in QUESTIONS]
    jobs = [mixed.submit(Job(list(p), SHORT)) for p in prompts]
    together = [collect(j) for j in jobs]
    alone = [collect(mixed.submit(Job(list(p), SHORT))) for p in prompts[:2]]
    exact = [collect(engine.submit(Job(list(p), SHORT))) for p in prompts[:2]]
    assert [a[0] for a in alone] == [e[0] for e in exact]
    assert all(t[1].usage.completion_tokens == 8 and t[1].usage.prompt_tokens == len(p)
               for t, p in zip(together, prompts, strict=True))
    for (text, _), topic in zip(together, ["sea", "bee", "owl", "volcano", "train", "moon"], strict=True):
        assert topic in text.lower()  # not another request's continuation
    assert not mixed.active and not mixed.filling and sorted(mixed.free) == [0, 1, 2]


def test_batched_prompts_reuse_any_cached_prefix_length(mixed, smollm2):
    first = prompt(smollm2, "Write one sentence about the sea, the waves and the wind over the water.")
    second = prompt(smollm2, "Write one sentence about the sea, the waves and the birds over the water.")
    for slot in range(mixed.parallel):
        mixed._forget(slot)
    collect(mixed.submit(Job(first, SHORT)))
    collect(mixed.submit(Job(second, SHORT)))
    assert mixed.kept == common_prefix(first, second)


def test_batched_prompts_cancelled_mid_prompt_frees_the_slot(mixed, smollm2):
    long = prompt(smollm2, "Summarise this: " + "the cat sat on the mat and looked at the sea. " * 20)
    assert len(long) > 3 * mixed.n_batch
    # looked at on admission and before each step: cancelled once one batch of the prompt is in
    result = collect(mixed.submit(Job(long, SHORT, CancelAfter(2))))
    assert result[1].finish_reason == "interrupted" and result[1].usage.completion_tokens == 0
    assert sorted(mixed.free) == [0, 1, 2] and not mixed.filling
    assert len(long) > mixed.kept + mixed.n_batch  # the slot holds what it kept and one batch, no more
    assert long[:mixed.kept + mixed.n_batch] in mixed.cached
    text, last = collect(mixed.submit(Job(prompt(smollm2, QUESTIONS[1]), SHORT)))
    assert "bee" in text.lower() and last.finish_reason == "length"


def test_batched_prompts_one_bad_request_fails_alone(mixed, smollm2):
    from llmlab.errors import BackendError

    good = prompt(smollm2, QUESTIONS[0])
    alone = collect(mixed.submit(Job(list(good), SHORT)))
    jobs = [mixed.submit(Job(list(good), SHORT)),
            mixed.submit(Job(list(range(600)), SHORT)),  # beyond the 512-token window
            mixed.submit(Job(good[:-1] + [mixed.n_vocab + 5], SHORT)),  # would fail the whole batch
            mixed.submit(Job(list(good), SHORT))]
    results = [collect(j) for j in jobs]
    assert isinstance(results[1], BackendError) and "beyond the 512-token window" in str(results[1])
    assert isinstance(results[2], BackendError) and "vocabulary" in str(results[2])
    assert results[0][0] == results[3][0] == alone[0]


def test_batch_rows_go_in_slot_order():
    """Generating sequences first, prompts in the room left (oldest first); the rows in slot order,
    which is what lets llama.cpp run them as one forward pass (mixed.slot_order)."""
    from types import SimpleNamespace as NS

    from llmlab.models.llamacpp.mixed import fill

    n = 8
    batch = NS(token=[0] * n, pos=[0] * n, n_seq_id=[0] * n, seq_id=[[0] for _ in range(n)],
               logits=[False] * n, n_tokens=0)
    gen = [NS(slot=s, pos=10 + s, last=100 + s) for s in (3, 0, 4)]
    old = NS(slot=2, pos=1, job=NS(tokens=[7, 8, 9, 10]))  # 3 prompt tokens left
    new = NS(slot=1, pos=0, job=NS(tokens=[5, 6, 7]))  # no room left for all of it
    plan = fill(batch, gen, [old, new], n_batch=n)
    assert batch.n_tokens == 8
    assert [row[0] for row in batch.seq_id] == [0, 1, 1, 2, 2, 2, 3, 4]
    assert batch.token == [100, 5, 6, 8, 9, 10, 103, 104]
    assert batch.pos == [10, 0, 1, 1, 2, 3, 13, 14]
    assert batch.logits == [True, False, False, False, False, True, True, True]
    assert [(seq.slot, tokens, row) for seq, tokens, row in plan] == [
        (0, [100], 0), (1, [5, 6], -1), (2, [8, 9, 10], 5), (3, [103], 6), (4, [104], 7)]


def test_a_new_request_takes_the_lowest_free_slot_of_equals(mixed):
    before = list(mixed.free)
    tokens = [mixed.n_vocab - 1] * 4  # shares no prefix with what any slot holds
    try:
        assert mixed._pick_slot(tokens) == min(before)
    finally:
        mixed.free = before


@pytest.mark.parametrize("flag", [["--batch-prompts"], []])
def test_the_batch_prompts_flag_reaches_the_engine(flag, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from llmlab.cli.main import app
    from llmlab.serve import server
    from llmlab.serve.process import free_port

    seen = {}

    def run(app, models, **kw):  # instead of listening: look at what was loaded
        seen["engine"] = models.by_name["smollm2"].model.engine
    monkeypatch.setattr(server, "run", run)
    result = CliRunner().invoke(app, ["--db", str(tmp_path / "calls.db"), "serve", "-m", "smollm2",
                                      "--no-ui", "-q", "--parallel", "2", "--n-ctx", "256",
                                      "--port", str(free_port()), *flag])
    assert result.exit_code == 0, result.output
    assert seen["engine"].batch_prompts is bool(flag)
    assert seen["engine"].parallel == 2 and seen["engine"].n_ctx_seq == 256
