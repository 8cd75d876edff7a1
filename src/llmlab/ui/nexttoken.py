"""The next-token view's arithmetic: how temperature, top-k and top-p reshape one step's distribution.

At each step a model gives every token in its vocabulary a probability; sampling then keeps the
``top_k`` most likely, keeps the smallest set of those whose probabilities add up to ``top_p``, and
sharpens (temperature < 1) or flattens (> 1) what is left before drawing one. This follows the
order of llmlab's default backend (llama.cpp: top-k, top-p, then temperature; transformers applies
temperature first, so its top-p cut can differ). Temperature 0 means greedy: the best token only.

What it gives up: a step's log-probabilities come with the ``n`` best alternatives (at most 20), not
the whole vocabulary, so probabilities after sampling are renormalised over the alternatives shown.
That is exact whenever top-k or top-p cuts inside them (the usual case) and is flagged otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Option:
    token: str
    p: float          # the model's own probability (temperature 1, nothing cut)
    kept: bool        # survives top-k and top-p
    p_sampled: float  # the chance of being drawn under the settings (0 when cut)


@dataclass
class Step:
    options: list[Option]
    shown_mass: float  # how much of the model's probability the alternatives shown hold
    exact: bool        # False when the cut reaches past the alternatives shown


def reshape(top: list[tuple[str, float]], temperature: float, top_k: int, top_p: float) -> Step:
    """``top``: (token, log-probability) best first, as a stream's ``TokenLogprob.top`` has them."""
    probs = [math.exp(lp) for _, lp in top]
    mass = sum(probs)
    n = len(top)
    keep = n if top_k <= 0 else min(top_k, n)
    exact = top_k > 0 and top_k <= n
    if top_p < 1.0:
        # top-p reads the distribution top-k left, renormalised (as llama.cpp and transformers do);
        # without a top-k inside the list shown, that is the whole vocabulary's
        within = sum(probs[:keep]) if exact else 1.0
        total = 0.0
        for i in range(keep):
            total += probs[i] / within
            if total >= top_p:  # the smallest set reaching top_p (llama.cpp keeps the token that crosses)
                keep, exact = i + 1, True
                break
    if temperature <= 0:
        keep, exact = 1, True
    logs = [lp for _, lp in top[:keep]]
    t = temperature if temperature > 0 else 1.0
    peak = max(logs) / t
    weights = [math.exp(lp / t - peak) for lp in logs]
    z = sum(weights)
    options = [Option(tok, probs[i], i < keep, weights[i] / z if i < keep else 0.0)
               for i, (tok, _) in enumerate(top)]
    return Step(options, mass, exact)


def shown(token: str) -> str:
    """A token as a table cell: spaces and line breaks made visible."""
    return repr(token)[1:-1].replace(" ", "␣") or "∅"
