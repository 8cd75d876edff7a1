"""The arena's leaderboard, computed as Chatbot Arena computes it (FastChat's ``elo_analysis.py``).

A battle is ``{"model_a", "model_b", "winner"}`` with ``winner`` one of ``model_a``, ``model_b``,
``tie`` or ``tie (bothbad)``. From a list of battles:

- ``bradley_terry``: the maximum-likelihood Bradley-Terry ratings, a tie counting as half a win and
  half a loss, in base 10 on a 400-point scale around 1000 (scipy's L-BFGS-B from all-zero ratings;
  every gradient step adds to one model what it takes from another, so the ratings keep summing to
  zero and 1000 is their mean);
- ``bootstrap``: the same fit on resampled battles, ``rounds`` times with a seeded generator: each
  distinct (pair, outcome) is redrawn with multinomial counts, as FastChat does, which gives the same
  distribution as resampling battles one by one at a fraction of the cost; 95% intervals are the
  2.5% and 97.5% quantiles;
- ``online_elo``: the classic sequential Elo update (K = 4), order-dependent, shown beside the fit;
- ``rank``: 1 + the number of models whose lower bound is above this model's upper bound, so models
  whose intervals overlap share a rank;
- ``win_fractions`` and ``battle_counts``: how often each model beat each other (ties not counted as
  wins) and how many battles each pair had.

What it gives up: no style control, no anchoring to a named model, no vote de-duplication per user.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
SCALE, BASE, INIT = 400.0, 10.0, 1000.0


def check_battles(battles: list[dict]) -> list[dict]:
    for i, b in enumerate(battles):
        if b.get("winner") not in WINNERS:
            raise DataError(f"battle {i}: winner must be one of {', '.join(WINNERS)}, "
                            f"got {b.get('winner')!r}")
        if not b.get("model_a") or not b.get("model_b") or b["model_a"] == b["model_b"]:
            raise DataError(f"battle {i}: needs two different models, got {b.get('model_a')!r} and "
                            f"{b.get('model_b')!r}")
    return battles


def _arrays(battles: list[dict]):
    """Distinct (model a, model b, outcome) rows with their counts; outcome 1 a win for a, 0.5 a tie."""
    import numpy as np

    models = list(dict.fromkeys(m for b in battles for m in (b["model_a"], b["model_b"])))
    index = {m: i for i, m in enumerate(models)}
    score = {"model_a": 2, "model_b": 0}
    rows = np.array([(index[b["model_a"]], index[b["model_b"]], score.get(b["winner"], 1)) for b in battles],
                    dtype=np.int64).reshape(-1, 3)
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    return distinct[:, :2], distinct[:, 2] / 2.0, counts.astype(float), models


def _fit(pairs, outcomes, weights, n: int):
    """Bradley-Terry ratings in natural units (log-odds per unit of ``log(BASE)``)."""
    import numpy as np
    from scipy.optimize import minimize
    from scipy.special import expit

    alpha = np.log(BASE)

    def loss(r):
        p = expit(alpha * (r[pairs[:, 0]] - r[pairs[:, 1]]))
        eps = 1e-12
        value = -(weights * (outcomes * np.log(p + eps) + (1 - outcomes) * np.log(1 - p + eps))).sum()
        g = -alpha * weights * (outcomes - p)
        grad = np.zeros(n)
        np.add.at(grad, pairs[:, 0], g)
        np.add.at(grad, pairs[:, 1], -g)
        return value, grad

    return minimize(loss, np.zeros(n), jac=True, method="L-BFGS-B",
                    options={"maxiter": 200, "gtol": 1e-8}).x


def bradley_terry(battles: list[dict]) -> dict[str, float]:
    """Each model's Bradley-Terry rating (mean 1000)."""
    pairs, outcomes, weights, models = _arrays(check_battles(battles))
    ratings = SCALE * _fit(pairs, outcomes, weights, len(models)) + INIT
    return dict(zip(models, map(float, ratings), strict=True))


def bootstrap(battles: list[dict], rounds: int = 1000,
              seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Each model's (2.5% quantile, median, 97.5% quantile) over ``rounds`` seeded resamples."""
    import numpy as np

    pairs, outcomes, weights, models = _arrays(check_battles(battles))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(int(weights.sum()), weights / weights.sum(), size=rounds)
    fits = np.array([_fit(pairs, outcomes, d.astype(float), len(models)) for d in draws]) * SCALE + INIT
    low, mid, high = np.quantile(fits, [0.025, 0.5, 0.975], axis=0)
    return {m: (float(low[i]), float(mid[i]), float(high[i])) for i, m in enumerate(models)}


def online_elo(battles: list[dict], k: float = 4.0) -> dict[str, float]:
    """Sequential Elo: after each battle each side moves by ``k`` times (score - expected score)."""
    rating: dict[str, float] = {}
    for b in check_battles(battles):
        a, c = b["model_a"], b["model_b"]
        ra, rc = rating.setdefault(a, INIT), rating.setdefault(c, INIT)
        expect_a = 1 / (1 + BASE ** ((rc - ra) / SCALE))
        score_a = {"model_a": 1.0, "model_b": 0.0}.get(b["winner"], 0.5)
        rating[a] = ra + k * (score_a - expect_a)
        rating[c] = rc + k * ((1 - score_a) - (1 - expect_a))
    return rating


def rank(intervals: dict[str, tuple[float, float]]) -> dict[str, int]:
    """1 + the number of models whose lower bound is above this model's upper bound."""
    return {m: 1 + sum(lo > hi for other, (lo, _) in intervals.items() if other != m)
            for m, (_, hi) in intervals.items()}


def battle_counts(battles: list[dict]) -> dict[tuple[str, str], int]:
    """Battles per unordered pair, keyed both ways."""
    counts: dict[tuple[str, str], int] = {}
    for b in check_battles(battles):
        for key in ((b["model_a"], b["model_b"]), (b["model_b"], b["model_a"])):
            counts[key] = counts.get(key, 0) + 1
    return counts


def win_fractions(battles: list[dict]) -> dict[tuple[str, str], float]:
    """(row, column) -> the share of their battles that row won outright (ties are not wins)."""
    wins: dict[tuple[str, str], int] = {}
    for b in battles:
        if b["winner"] in ("model_a", "model_b"):
            won = b["model_a"] if b["winner"] == "model_a" else b["model_b"]
            lost = b["model_b"] if won == b["model_a"] else b["model_a"]
            wins[(won, lost)] = wins.get((won, lost), 0) + 1
    return {pair: wins.get(pair, 0) / n for pair, n in battle_counts(battles).items()}


@dataclass
class Standing:
    model: str
    rating: float           # Bradley-Terry
    low: float              # 95% bootstrap interval
    high: float
    rank: int
    elo: float              # online Elo, K = 4
    battles: int
    wins: int
    ties: int


def leaderboard(battles: list[dict], *, rounds: int = 1000, seed: int = 0) -> list[Standing]:
    """The standings, best first. A battle marked ``"anonymous": False`` (a named-mode vote) does not
    count: only votes cast before the names were known measure the answers and not the names."""
    counted = [b for b in check_battles(battles) if b.get("anonymous", True)]
    if not counted:
        return []
    bt, ci, elo = bradley_terry(counted), bootstrap(counted, rounds, seed), online_elo(counted)
    ranks = rank({m: (lo, hi) for m, (lo, _, hi) in ci.items()})
    out = []
    for m in bt:
        mine = [b for b in counted if m in (b["model_a"], b["model_b"])]
        wins = sum(b["winner"] == ("model_a" if b["model_a"] == m else "model_b") for b in mine)
        ties = sum(b["winner"] in ("tie", "tie (bothbad)") for b in mine)
        out.append(Standing(m, bt[m], ci[m][0], ci[m][2], ranks[m], elo[m], len(mine), wins, ties))
    return sorted(out, key=lambda s: -s.rating)
