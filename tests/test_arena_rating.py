"""The arena leaderboard against independent computations: a closed form for two models, scikit-learn's
unpenalised logistic regression for more, Elo updates worked by hand, and the rank rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmlab.arena import bootstrap, bradley_terry, leaderboard, online_elo, rank
from llmlab.errors import DataError


def battles(spec: list[tuple[str, str, str, int]]) -> list[dict]:
    return [{"model_a": a, "model_b": b, "winner": w} for a, b, w, n in spec for _ in range(n)]


def test_two_models_match_the_closed_form_with_ties_as_half_wins():
    bs = battles([("a", "b", "model_a", 6), ("b", "a", "model_a", 2), ("a", "b", "tie", 1),
                  ("a", "b", "tie (bothbad)", 1)])
    wins_a, wins_b = 6 + 1, 2 + 1  # two ties: half a win each way
    gap = 400 * math.log10(wins_a / wins_b)
    r = bradley_terry(bs)
    assert r["a"] == pytest.approx(1000 + gap / 2, abs=1e-3)
    assert r["b"] == pytest.approx(1000 - gap / 2, abs=1e-3)


def test_more_models_match_unpenalised_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    spec = [("a", "b", "model_a", 7), ("a", "b", "model_b", 3), ("b", "c", "model_a", 5),
            ("c", "b", "model_a", 4), ("a", "c", "tie", 3), ("c", "a", "model_b", 6),
            ("d", "a", "model_a", 2),
            ("d", "b", "model_b", 3), ("c", "d", "tie (bothbad)", 2), ("d", "c", "model_a", 4)]
    bs = battles(spec)
    models = ["a", "b", "c", "d"]
    rows, ys, ws = [], [], []
    for b in bs:  # one row per battle outcome; a tie is half a win and half a loss
        x = np.zeros(len(models))
        x[models.index(b["model_a"])], x[models.index(b["model_b"])] = math.log(10), -math.log(10)
        score = {"model_a": 1.0, "model_b": 0.0}.get(b["winner"], 0.5)
        for y, w in ((1, score), (0, 1 - score)):
            if w:
                rows.append(x)
                ys.append(y)
                ws.append(w)
    lr = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=10_000)  # unpenalised
    lr.fit(np.array(rows), np.array(ys), sample_weight=np.array(ws))
    expected = 400 * (lr.coef_[0] - lr.coef_[0].mean()) + 1000
    got = bradley_terry(bs)
    assert [got[m] for m in models] == pytest.approx(list(expected), abs=0.05)
    assert sum(got.values()) / 4 == pytest.approx(1000, abs=1e-6)


def test_online_elo_matches_updates_worked_by_hand():
    bs = battles([("a", "b", "model_a", 1), ("b", "c", "tie", 1), ("c", "a", "model_a", 1)])
    # 1: a 1000 vs b 1000, a wins: a 1002, b 998
    # 2: b 998 vs c 1000, tie: expected for b = 1/(1+10^(2/400))
    eb = 1 / (1 + 10 ** (2 / 400))
    b2, c2 = 998 + 4 * (0.5 - eb), 1000 + 4 * (0.5 - (1 - eb))
    # 3: c vs a 1002, c wins
    ec = 1 / (1 + 10 ** ((1002 - c2) / 400))
    c3, a3 = c2 + 4 * (1 - ec), 1002 + 4 * (0 - (1 - ec))
    assert online_elo(bs) == pytest.approx({"a": a3, "b": b2, "c": c3})


def test_bootstrap_intervals_contain_the_estimate_and_repeat_with_the_seed():
    bs = battles([("a", "b", "model_a", 12), ("b", "a", "model_a", 5), ("a", "c", "model_a", 9),
                  ("c", "a", "model_a", 6), ("b", "c", "tie", 4), ("c", "b", "model_a", 7)])
    point = bradley_terry(bs)
    first = bootstrap(bs, rounds=200, seed=3)
    assert first == bootstrap(bs, rounds=200, seed=3)
    assert first != bootstrap(bs, rounds=200, seed=4)
    for m, (low, mid, high) in first.items():
        assert low < point[m] < high and low <= mid <= high


def test_rank_counts_models_clearly_above():
    intervals = {"a": (1100, 1200), "b": (1050, 1150), "c": (900, 1000), "d": (700, 800)}
    assert rank(intervals) == {"a": 1, "b": 1, "c": 3, "d": 4}


def test_the_leaderboard_counts_only_anonymous_votes_and_refuses_bad_ones():
    bs = battles([("a", "b", "model_a", 8), ("b", "a", "model_a", 3), ("a", "b", "tie", 2)])
    named = [{"model_a": "b", "model_b": "a", "winner": "model_a", "anonymous": False}] * 50
    board = leaderboard(bs + named, rounds=100)
    assert [s.model for s in board] == ["a", "b"]
    top = board[0]
    assert top.battles == 13 and top.wins == 8 and top.ties == 2 and top.low < top.rating < top.high
    assert top.rating == pytest.approx(bradley_terry(bs)["a"])
    assert leaderboard(named) == []
    with pytest.raises(DataError, match="winner must be one of"):
        bradley_terry([{"model_a": "a", "model_b": "b", "winner": "a"}])
    with pytest.raises(DataError, match="two different models"):
        online_elo([{"model_a": "a", "model_b": "a", "winner": "tie"}])


# --- battles and votes with the bundled models -----------------------------------------------------------


def test_a_battle_answers_on_random_sides_with_one_seed_and_takes_one_vote(smollm2, gemma, tmp_path):
    import random

    from llmlab import GenerationConfig
    from llmlab.arena.battle import start
    from llmlab.errors import ConfigError
    from llmlab.store import Store

    models = {"smollm2": smollm2, "gemma3-270m": gemma}
    config = GenerationConfig(max_new_tokens=12, temperature=0.8)
    sides = set()
    store = Store.open(tmp_path / "votes.db")
    for seed in range(6):
        battle = start(models, "Name a colour.", config, rng=random.Random(seed))
        sides.add(battle.model_a)
        assert {battle.model_a, battle.model_b} == set(models) and battle.done
        assert isinstance(battle.settings["seed"], int) and battle.settings["temperature"] == 0.8
        assert battle.answer_a and battle.answer_b
        battle.vote(["a", "b", "tie", "bad"][seed % 4], store)
        with pytest.raises(ConfigError, match="voted on already"):
            battle.vote("a", store)
    assert sides == set(models)  # both models were drawn on side A
    votes = store.votes()
    expected = ["model_a", "model_b", "tie", "tie (bothbad)", "model_a", "model_b"]
    assert [v["winner"] for v in votes] == expected
    assert all(v["anonymous"] and v["answer_a"] is not None for v in votes)
    board = leaderboard(votes, rounds=50)
    assert {s.model for s in board} == set(models) and sum(s.battles for s in board) == 12
    store.close()
