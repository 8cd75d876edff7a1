"""The Arena tab: two models answer one prompt side by side, you vote, then their names are shown.

It is ``llmlab arena battle`` in the browser, on the same code (``arena.battle``: ``draw`` puts two of
the chosen models on random sides with one seed, ``Battle.answer`` streams each side), and the same
leaderboard (``arena.rating.leaderboard`` over ``wb.store.votes()``: Bradley-Terry with bootstrap
intervals, rank, online Elo, only anonymous votes). A battle lives in this process until it is voted
on; the vote buttons stay disabled until both answers are whole, and the server refuses a vote
before that too, so a client of the HTTP API cannot vote early either.

What it gives up: the two answers stream one after the other, not at once (a local model serves one
caller at a time, and two side by side on two CPU cores are no faster); battles not voted on are
forgotten after ``KEEP`` newer ones or a restart; there is no per-user vote de-duplication.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections import OrderedDict
from functools import partial
from pathlib import Path

from ..errors import LlmlabError
from .workbench import config_from

DEFAULT_MODELS = ["smollm2", "gemma3-270m"]
KEEP = 500  # battles kept for a vote; an older one is dropped (its voter is told to start again)
ROUNDS = 1000  # bootstrap resamples, as the CLI's default
VOTE_BUTTONS = [("a", "A is better"), ("b", "B is better"), ("tie", "Tie"), ("bad", "Both are bad")]
HIDDEN = "Names are hidden until you vote."
RATED = ("Only **anonymous** votes count: a vote cast after the names were shown (named mode) is stored "
         "and exported but not rated, since it may measure the names rather than the answers.")


def tables(votes: list[dict]):
    """The leaderboard, the win-fraction matrix and the battle counts as three DataFrames."""
    import pandas as pd

    from ..arena.rating import battle_counts, leaderboard, win_fractions

    board = leaderboard(votes, rounds=ROUNDS)
    rows = [{"rank": s.rank, "model": s.model, "rating": round(s.rating),
             "95% CI": f"[{s.low:.0f}, {s.high:.0f}]", "Elo (K=4)": round(s.elo), "votes": s.battles,
             "wins": s.wins, "ties": s.ties} for s in board]
    columns = ["rank", "model", "rating", "95% CI", "Elo (K=4)", "votes", "wins", "ties"]
    counted = [v for v in votes if v.get("anonymous", True)]
    order = [s.model for s in board]
    fractions, counts = win_fractions(counted), battle_counts(counted)

    def matrix(cell):
        return pd.DataFrame([{"row vs column": r, **{c: cell(r, c) for c in order}} for r in order],
                            columns=["row vs column", *order])

    return (pd.DataFrame(rows, columns=columns),
            matrix(lambda r, c: "" if (r, c) not in fractions else round(fractions[(r, c)], 2)),
            matrix(lambda r, c: counts.get((r, c), 0)))


def build(wb) -> None:
    import gradio as gr

    from ..arena.battle import draw

    battles: OrderedDict[str, object] = OrderedDict()
    guard = threading.Lock()
    exports = Path(tempfile.mkdtemp(prefix="llmlab-arena-"))

    def keep(battle) -> None:
        with guard:
            battles[battle.id] = battle
            while len(battles) > KEEP:
                battles.popitem(last=False)

    def buttons(enabled: bool):
        return [gr.update(interactive=enabled) for _ in VOTE_BUTTONS]

    def fight(names, prompt, temperature, max_tokens, seed, mode):
        if not (prompt or "").strip():
            raise gr.Error("write a prompt first")
        config = config_from({"temperature": temperature, "max_new_tokens": max_tokens, "seed": seed})
        try:
            battle = draw(names or [], prompt, config, anonymous=mode != "named")
        except LlmlabError as exc:
            raise gr.Error(str(exc)) from exc
        keep(battle)
        who = HIDDEN if battle.anonymous else (
            f"A is **{battle.model_a}**, B is **{battle.model_b}** (named mode: this vote is not rated).")
        yield "", "", battle.id, f"A is answering… {who}", *buttons(False)
        try:
            for side in ("a", "b"):
                shown = f"{side.upper()} is answering… {who}"
                with wb.using(getattr(battle, f"model_{side}")) as model:
                    for _ in battle.answer(side, model):
                        yield battle.answer_a, battle.answer_b, battle.id, shown, *buttons(False)
        except LlmlabError as exc:
            raise gr.Error(str(exc)) from exc
        shown = f"Both answers are in: vote. {who}"
        yield battle.answer_a, battle.answer_b, battle.id, shown, *buttons(battle.done)

    def export_file() -> str:
        """Every vote as JSONL, in one file rewritten whole (gradio serves a copy, so a reader never
        sees it half written)."""
        votes = wb.store.votes()
        fd, part = tempfile.mkstemp(suffix=".part", dir=exports)
        with open(fd, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(v, ensure_ascii=False) + "\n" for v in votes)
        os.replace(part, exports / "arena-votes.jsonl")
        return str(exports / "arena-votes.jsonl")

    last: dict = {}

    def current():
        """The three tables for the votes stored now; read once per new vote, not once per table."""
        votes = wb.store.votes()
        key = (len(votes), votes[-1]["id"] if votes else None)
        if last.get("key") != key:
            last.update(key=key, tables=tables(votes))
        return last["tables"]

    def refresh():
        return *current(), export_file()

    def vote(choice, battle_id):
        with guard:
            battle = battles.get(battle_id or "")
        if battle is None:
            raise gr.Error("no battle to vote on: ask both models first (or this one has expired)")
        try:
            battle.vote(choice, wb.store)
        except LlmlabError as exc:
            raise gr.Error(str(exc)) from exc
        rated = "" if battle.anonymous else " (named: not rated)"
        revealed = f"A was **{battle.model_a}**, B was **{battle.model_b}**. Vote stored{rated}."
        # the names at once; the tables (a bootstrap of the whole leaderboard, seconds) in a step of
        # their own, so a slow refit never lands on the next battle's buttons
        return revealed, *buttons(False)

    gr.Markdown("Two models answer the same prompt with the same settings and seed, on sides drawn at "
                "random. Vote for the better answer; the names are shown after the vote.")
    with gr.Row(equal_height=False):
        models = gr.Dropdown(wb.choices(), value=DEFAULT_MODELS, multiselect=True, allow_custom_value=True,
                             label="Models (two are drawn for each battle)", elem_id="arena-models",
                             min_width=240, scale=3)
        mode = gr.Radio(["anonymous", "named"], value="anonymous", label="Mode", elem_id="arena-mode",
                        min_width=160, scale=1)
    prompt = gr.Textbox(label="Prompt", lines=2, placeholder="Explain gravity to a child.",
                        elem_id="arena-prompt")
    with gr.Accordion("Settings (the same for both sides)", open=False):
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature",
                                    elem_id="arena-temperature", min_width=160)
            max_tokens = gr.Number(128, label="Max new tokens", precision=0, minimum=1,
                                   elem_id="arena-max-tokens", min_width=120)
            seed = gr.Number(-1, label="Seed (-1: drawn, then shared)", precision=0, elem_id="arena-seed",
                             min_width=120)
    go = gr.Button("Ask both", variant="primary", elem_id="arena-go")
    with gr.Row(equal_height=True):
        answer_a = gr.Textbox(label="A", lines=8, interactive=False, elem_id="arena-a", min_width=280)
        answer_b = gr.Textbox(label="B", lines=8, interactive=False, elem_id="arena-b", min_width=280)
    with gr.Row():
        vote_buttons = [gr.Button(label, interactive=False, elem_id=f"vote-{key}", min_width=120)
                        for key, label in VOTE_BUTTONS]
    names = gr.Markdown(HIDDEN, elem_id="arena-names")
    battle_id = gr.Textbox(label="battle id", visible=False, elem_id="arena-battle")

    gr.Markdown("### Leaderboard\n" + RATED)
    # a callable value is read again on each page load, so a new visitor sees the votes cast so far
    board = gr.Dataframe(lambda: current()[0], label="Standings (Bradley-Terry rating, 95% bootstrap "
                         "interval; rank: 1 + the models clearly above)", interactive=False,
                         elem_id="arena-leaderboard", wrap=True)
    with gr.Row():
        wins = gr.Dataframe(lambda: current()[1], interactive=False,
                            label="Share of battles the row model beat the column model (ties are no win)",
                            elem_id="arena-wins", min_width=280)
        counts = gr.Dataframe(lambda: current()[2], label="Battles per pair", interactive=False,
                              elem_id="arena-counts", min_width=280)
    with gr.Row():
        refresh_button = gr.Button("Refresh", elem_id="arena-refresh", min_width=120)
        export = gr.DownloadButton("Download votes (JSONL)", value=export_file, elem_id="arena-export",
                                   min_width=200)

    tables_out = [board, wins, counts, export]
    go.click(fight, [models, prompt, temperature, max_tokens, seed, mode],
             [answer_a, answer_b, battle_id, names, *vote_buttons], api_name="arena_battle")
    prompt.submit(fight, [models, prompt, temperature, max_tokens, seed, mode],
                  [answer_a, answer_b, battle_id, names, *vote_buttons], api_name=False)
    for (key, _), button in zip(VOTE_BUTTONS, vote_buttons, strict=True):
        button.click(partial(vote, key), [battle_id], [names, *vote_buttons], api_name=f"arena_vote_{key}"
                     ).success(refresh, None, tables_out, api_name=False)
    refresh_button.click(refresh, None, tables_out, api_name="arena_leaderboard")
