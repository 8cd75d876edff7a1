"""The typed stream, capabilities and messages that every caller reads, on the bundled models."""

from __future__ import annotations

import threading

import pytest

from llmlab import GenerationConfig, Message
from llmlab.chat import ToolCall, as_messages
from llmlab.errors import NotSupportedError, PromptError
from llmlab.models.decoding import ByteText, Decoding
from llmlab.models.decoding import log_softmax as _log_softmax
from llmlab.models.llamacpp.loader import open_llama

PROMPT = [Message("user", "Name three colours.")]


def test_generated_log_probabilities_equal_a_full_evaluation(smollm2):
    r = smollm2.generate(PROMPT, GenerationConfig(temperature=0, max_new_tokens=8, logprobs=3))
    ids = [lp.id for lp in r.logprobs]
    assert len(ids) == r.usage.completion_tokens + (r.finish_reason == "stop")
    for lp in r.logprobs:  # greedy: the chosen token is the best of its alternatives
        assert len(lp.top) == 3 and lp.top[0][0] == lp.token and lp.top[0][1] == pytest.approx(lp.logprob)
    reference = open_llama(smollm2.info.path, n_ctx=256, logits_all=True)
    try:
        prompt = smollm2.prompt_ids(PROMPT)
        reference.eval(prompt + ids)
        want = [float(_log_softmax(reference.scores[len(prompt) - 1 + j])[t]) for j, t in enumerate(ids)]
    finally:
        reference.close()
    # one token at a time against one batch: llama.cpp's kernels round differently (as in test_evals_score)
    assert [lp.logprob for lp in r.logprobs] == pytest.approx(want, abs=0.15)
    assert r.logprobs[0].logprob == pytest.approx(want[0], abs=1e-3)  # the same prompt batch: equal


def test_no_log_probabilities_unless_asked(smollm2):
    r = smollm2.generate(PROMPT, temperature=0, max_new_tokens=4)
    assert r.logprobs == [] and r.text


def test_a_response_cancelled_from_another_thread_stops_and_keeps_its_text(smollm2):
    r = smollm2.prompt("Count from one to a hundred:", temperature=0, max_new_tokens=200)
    pieces = []
    for piece in r:
        pieces.append(piece)
        if len(pieces) == 3:
            t = threading.Thread(target=r.cancel)
            t.start()
            t.join()
    assert r.interrupted and r.finish_reason == "interrupted"
    assert r.text == "".join(pieces) and 3 <= r.usage.completion_tokens < 200


def test_a_cancel_event_given_to_prompt_stops_it(smollm2):
    cancel = threading.Event()
    cancel.set()
    r = smollm2.prompt("Count from one to a hundred:", max_new_tokens=50, cancel=cancel).complete()
    assert r.interrupted and r.usage.completion_tokens == 0


def test_control_and_image_tokens_never_become_text(gemma):
    ids = {s: gemma.token_ids(s, special=True) for s in ("<start_of_image>", "<end_of_turn>", "<table>")}
    assert all(len(v) == 1 for v in ids.values()), ids
    assert gemma.is_hidden(ids["<start_of_image>"][0]) and gemma.is_hidden(ids["<end_of_turn>"][0])
    assert not gemma.is_hidden(ids["<table>"][0])  # Gemma's HTML-tag tokens are real text
    hello = gemma.token_ids("Hello there", special=False)
    stream = hello[:1] + ids["<start_of_image>"] + hello[1:] + ids["<table>"]
    d = Decoding(GenerationConfig(max_new_tokens=50), 0, ByteText(lambda t: gemma.llm.detokenize([t])),
                 is_end=gemma.is_end, is_hidden=gemma.is_hidden)
    text = "".join(c.text for c in (d.feed(t) for t in stream) if c) + d.end().text
    assert text == "Hello there<table>" and d.n == len(stream)


def test_sampling_reproduces_while_scoring_keeps_gemmas_prefix(gemma):
    shared = "Review: a fine film.\nSentiment: positive\n\n" * 6
    dull, joy = shared + "Review: dull.\nSentiment:", shared + "Review: a joy.\nSentiment:"
    labels = [" positive", " negative"]
    first = gemma.score(dull, labels)
    twice = [[gemma.score(joy, labels), gemma.score(dull, labels)] for _ in range(2)]
    assert gemma.kept_tokens > len(gemma.encode(shared)) - 2  # the few-shot part was not recomputed
    assert twice[0] == twice[1]  # the same calls from the same cache state: the same scores
    # against the first (from another cache state): fewer tokens are evaluated in one batch, and
    # llama.cpp's kernels round differently by batch size (bench/RESULTS.md)
    assert twice[0][1] == pytest.approx(first, abs=0.1)
    gemma.generate(shared, max_new_tokens=2, seed=1)
    assert gemma.kept_tokens == 0  # generation starts from scratch on a sliding-window model


def test_capabilities_are_asked_one_way(smollm2):
    assert smollm2.can("score") and smollm2.can("logprobs") and smollm2.can("echo")
    assert not smollm2.can("tools")
    with pytest.raises(NotSupportedError, match="cannot call tools; try another model"):
        smollm2.require("tools", "try another model")
    with pytest.raises(ValueError, match="unknown capability"):
        smollm2.can("telepathy")


def test_messages_carry_tool_calls_and_tool_results(smollm2):
    msgs = as_messages([
        {"role": "user", "content": "What is 6 x 7?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "multiply", "arguments": '{"a": 6, "b": 7}'}}]},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
    ])
    assert msgs[1].tool_calls == (ToolCall("c1", "multiply", '{"a": 6, "b": 7}'),)
    assert msgs[2].to_dict() == {"role": "tool", "content": "42", "tool_call_id": "c1"}
    assert Message("user", "hi").to_dict() == {"role": "user", "content": "hi"}  # logs read as before
    assert "42" in smollm2.render(msgs)
    with pytest.raises(PromptError, match="only a tool message"):
        Message("user", "x", tool_call_id="c1")
    with pytest.raises(PromptError, match="only an assistant message"):
        Message("user", "x", (ToolCall("c1", "f"),))
