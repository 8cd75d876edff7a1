"""The Arena tab, end to end with the bundled models: through gradio_client (the HTTP API the page's
events expose) and through Chromium (the vote flow a person sees).

A vote cast before both answers finish is made certain, not raced: the test holds both models'
locks (``Workbench.lock``, which the page takes around each answer), so the battle has drawn its
sides and shown its id but cannot answer until the test lets go.
"""

from __future__ import annotations

import pytest

MODELS = ["smollm2", "gemma3-270m"]


@pytest.fixture
def client(ui_app):
    from gradio_client import Client

    return Client(ui_app.url, verbose=False)


def battle(client, mode="anonymous", seed=7, prompt="Name a colour."):
    """Ask both models (16 tokens) and return every streamed output, the last one whole."""
    job = client.submit(MODELS, prompt, 0.7, 16, seed, mode, api_name="/arena_battle")
    job.result(timeout=120)
    return job.outputs()


def shown_board(client):
    board, _, counts, _ = client.predict(api_name="/arena_leaderboard")
    return board, counts


def expected_board(votes):
    from llmlab.arena.rating import leaderboard

    return [[s.rank, s.model, round(s.rating), f"[{s.low:.0f}, {s.high:.0f}]", round(s.elo), s.battles,
             s.wins, s.ties] for s in leaderboard(votes, rounds=1000)]


def test_a_battle_streams_both_answers_and_refuses_a_vote_until_both_are_whole(ui_app, client):
    from gradio_client.exceptions import AppError

    locks = [ui_app.wb.lock(name) for name in MODELS]
    for lock in locks:
        lock.acquire()
    try:
        job = client.submit(MODELS, "Name a fruit.", 0.7, 16, 11, "anonymous", api_name="/arena_battle")
        a, b, battle_id, names = next(job)  # sides drawn; neither model may answer yet
        assert (a, b) == ("", "") and battle_id and "hidden" in names
        with pytest.raises(AppError, match="vote after both answers have finished"):
            client.predict(battle_id, api_name="/arena_vote_a")
    finally:
        for lock in locks:
            lock.release()
    job.result(timeout=120)
    outputs = job.outputs()
    a, b, _, _ = outputs[-1]
    assert a.strip() and b.strip()
    # streamed: A grew piece by piece while B was still empty, then B grew with A whole
    a_alone = [o for o in outputs if o[0] and not o[1]]
    b_after = [o for o in outputs if o[1] and o[1] != b]
    assert len(a_alone) > 2 and all(o[0] == a for o in b_after) and b_after
    assert not any(v["battle"] == battle_id for v in ui_app.wb.store.votes())  # the early vote left no row

    names = client.predict(battle_id, api_name="/arena_vote_b")  # (the buttons are not in the API)
    *_, export = client.predict(api_name="/arena_leaderboard")
    stored = [v for v in ui_app.wb.store.votes() if v["battle"] == battle_id]
    assert len(stored) == 1 and stored[0]["winner"] == "model_b" and stored[0]["anonymous"]
    vote = stored[0]
    assert (vote["answer_a"], vote["answer_b"]) == (a, b)
    assert vote["settings"]["seed"] == 11 and vote["settings"]["max_new_tokens"] == 16
    assert f"A was **{vote['model_a']}**, B was **{vote['model_b']}**" in names
    assert {vote["model_a"], vote["model_b"]} == set(MODELS)
    assert vote["call_a"] and vote["call_b"]  # both answers are in the UI's call log
    with pytest.raises(AppError, match="voted on already"):
        client.predict(battle_id, api_name="/arena_vote_a")
    with pytest.raises(AppError, match="no battle to vote on"):
        client.predict("not-a-battle", api_name="/arena_vote_a")
    # the download holds every stored vote, this one included
    import json
    from pathlib import Path

    exported = [json.loads(line) for line in Path(export).read_text().splitlines()]
    assert [v["battle"] for v in exported] == [v["battle"] for v in ui_app.wb.store.votes()]


def test_named_votes_are_stored_but_the_leaderboard_rates_only_anonymous_ones(ui_app, client):
    for mode, choice in (("named", "tie"), ("anonymous", "bad")):
        *_, (a, b, battle_id, names) = battle(client, mode)
        if mode == "named":  # the names are shown before the vote
            assert "A is **" in names and "not rated" in names
        client.predict(battle_id, api_name=f"/arena_vote_{choice}")
    votes = ui_app.wb.store.votes()
    named = [v for v in votes if not v["anonymous"]]
    assert named and named[-1]["winner"] == "tie"
    board, counts = shown_board(client)
    assert board["data"] == expected_board(votes)
    anonymous = sum(v["anonymous"] for v in votes)
    assert sum(row[5] for row in board["data"]) == 2 * anonymous  # each rated battle counts for both sides
    pair = [row for row in counts["data"] if row[0] == "smollm2"][0]
    assert pair[counts["headers"].index("gemma3-270m")] == anonymous
    # the named vote would have changed the standings had it counted
    assert board["data"] != expected_board([{**v, "anonymous": True} for v in votes])


def test_the_vote_flow_in_the_browser(ui_app, page):
    page.get_by_role("tab", name="Arena").click()
    page.get_by_text("Settings (the same for both sides)").click()
    page.locator("#arena-max-tokens input").fill("16")
    page.locator("#arena-prompt textarea").fill("Say hello.")
    # held models: the battle starts (its sides are drawn) but cannot answer, and the vote stays shut
    locks = [ui_app.wb.lock(name) for name in MODELS]
    for lock in locks:
        lock.acquire()
    try:
        page.locator("#arena-go").click()
        page.wait_for_function("document.querySelector('#arena-names').innerText.includes('A is answering')")
        assert all(page.locator(f"#vote-{key}").is_disabled() for key in ("a", "b", "tie", "bad"))
    finally:
        for lock in locks:
            lock.release()
    page.wait_for_selector("#vote-a:not([disabled])", timeout=120_000)
    assert page.locator("#arena-a textarea").input_value().strip()
    assert page.locator("#arena-b textarea").input_value().strip()
    assert "hidden" in page.locator("#arena-names").inner_text()
    before = sum(v["anonymous"] for v in ui_app.wb.store.votes())
    page.locator("#vote-a").click()
    page.wait_for_function("document.querySelector('#arena-names').innerText.includes('A was')")
    assert page.locator("#vote-a").is_disabled()  # one vote per battle
    votes = ui_app.wb.store.votes()
    assert sum(v["anonymous"] for v in votes) == before + 1 and votes[-1]["winner"] == "model_a"
    # the standings on the page now count this vote: each model's votes column adds up to 2 per battle
    total = str(2 * (before + 1))
    page.wait_for_function(
        """total => {
            const rows = [...document.querySelectorAll('#arena-leaderboard [role=row]')]
                .map(r => [...r.querySelectorAll('[role=gridcell]')]).filter(cells => cells.length);
            const votes = rows.map(cells => parseInt(cells[5].innerText));
            return rows.length === 2 && String(votes.reduce((x, y) => x + y, 0)) === total;
        }""", arg=total, timeout=30_000)
    page.shot("arena")
    # at a phone's width the two answers stack instead of squeezing side by side
    page.set_viewport_size({"width": 390, "height": 844})
    box_a, box_b = page.locator("#arena-a").bounding_box(), page.locator("#arena-b").bounding_box()
    assert box_b["y"] >= box_a["y"] + box_a["height"] - 1 and box_a["width"] > 300
    page.shot("arena-phone")
