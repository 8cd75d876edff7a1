"""The next-token view's reshaping equals transformers' own sampling warpers applied in llama.cpp's
order (top-k, top-p, then temperature), computed on the full vocabulary."""

from __future__ import annotations

import math

import pytest

from llmlab.ui.nexttoken import reshape

torch = pytest.importorskip("torch")
from transformers.generation.logits_process import (  # noqa: E402
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


def reference(logits, temperature, top_k, top_p):
    scores = logits.clone()[None, :]
    if top_k > 0:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p, min_tokens_to_keep=1)(None, scores)
    scores = TemperatureLogitsWarper(temperature)(None, scores)
    return torch.softmax(scores, dim=-1)[0]


@pytest.mark.parametrize("temperature,top_k,top_p", [
    (1.0, 10, 1.0), (0.7, 10, 0.9), (1.5, 5, 0.8), (0.3, 20, 0.5), (1.0, 0, 0.6), (2.0, 15, 0.95)])
def test_reshape_equals_transformers_warpers(temperature, top_k, top_p):
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(500, generator=g) * 3
    logp = torch.log_softmax(logits, dim=-1)
    best = torch.argsort(logp, descending=True)[:20]
    top = [(f"t{int(i)}", float(logp[i])) for i in best]
    step = reshape(top, temperature, top_k, top_p)
    ref = reference(logits, temperature, top_k, top_p)
    assert step.exact
    for option, i in zip(step.options, best, strict=True):
        assert option.p == pytest.approx(math.exp(float(logp[i])), rel=1e-6)
        assert option.p_sampled == pytest.approx(float(ref[i]), abs=1e-6)
        assert option.kept == bool(ref[i] > 0)
    assert sum(o.p_sampled for o in step.options) == pytest.approx(1.0)


def test_greedy_keeps_one_token_and_flags_a_cut_past_the_list():
    top = [("a", math.log(0.3)), ("b", math.log(0.2)), ("c", math.log(0.1))]
    greedy = reshape(top, 0.0, 40, 0.95)
    assert [o.p_sampled for o in greedy.options] == [1.0, 0.0, 0.0]
    wide = reshape(top, 1.0, 40, 0.95)  # top-k 40 and top-p 0.95 reach past the three shown
    assert not wide.exact and wide.shown_mass == pytest.approx(0.6)
    assert [round(o.p_sampled, 3) for o in wide.options] == [0.5, 0.333, 0.167]
