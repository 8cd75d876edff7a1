"""``llmlab arena``: blind head-to-head answers in the terminal, and the rated leaderboard.

    llmlab arena battle "Explain gravity to a child." -m smollm2 -m gemma3-270m
    llmlab arena battle "Write a haiku about rain." -m smollm2 -m gemma3-270m --vote a   # scripted
    llmlab arena leaderboard [--rounds 1000] [--export votes.jsonl]

A battle shows two answers as A and B (sides drawn at random, same settings and seed), takes a vote
(a, b, tie, bad) and only then names the models. Votes go to the store; the leaderboard rates the
anonymous ones as Chatbot Arena does (``llmlab.arena.rating``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .foundation import NCtx, Threads
from .main import app, err

arena_app = typer.Typer(help="Blind head-to-head answers and a rated leaderboard.", no_args_is_help=True)
app.add_typer(arena_app, name="arena")


@arena_app.command("battle")
def battle_command(
    prompt: Annotated[str, typer.Argument(help="what both models answer", show_default=False)],
    model: Annotated[list[str], typer.Option("--model", "-m", help="two or more models (repeat)")] = None,
    vote: Annotated[str | None, typer.Option(
        "--vote", help="a, b, tie or bad (asked for if not given)")] = None,
    named: Annotated[bool, typer.Option(
        "--named", help="show the names before the vote (not rated)")] = False,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n")] = 128,
    temperature: Annotated[float, typer.Option("--temperature", "-t")] = 0.7,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="the same for both sides (default: drawn)")] = None,
    n_ctx: NCtx = None, threads: Threads = None,
):
    """Two models answer PROMPT blind; you vote; then their names are shown."""
    from ..arena.battle import VOTES, start
    from ..config import GenerationConfig
    from ..errors import ConfigError
    from ..models.registry import load_model, load_options
    from ..store import Store

    names = list(dict.fromkeys(model or []))
    if len(names) < 2:
        raise ConfigError("give two or more different models with -m")
    if vote is not None and vote not in VOTES:
        raise ConfigError(f"--vote is one of a, b, tie, bad; got {vote!r}")
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    options = load_options(n_ctx=n_ctx, threads=threads)
    loaded = {}
    try:
        for name in names:
            loaded[name] = load_model(name, **options)
        battle = start(loaded, prompt, config, anonymous=not named)
    finally:
        for m in loaded.values():
            m.close()
    for side in ("a", "b"):
        who = f" ({getattr(battle, f'model_{side}')})" if named else ""
        print(f"--- {side.upper()}{who} ---\n{getattr(battle, f'answer_{side}').strip()}\n")
    if vote is None:
        vote = typer.prompt("Which is better? a, b, tie or bad").strip().lower()
    store = Store.open()
    try:
        battle.vote(vote, store)
    finally:
        store.close()
    print(f"A was {battle.model_a}, B was {battle.model_b}; vote stored"
          + ("" if battle.anonymous else " (named: not rated)"))


@arena_app.command("leaderboard")
def leaderboard_command(
    rounds: Annotated[int, typer.Option("--rounds", help="bootstrap resamples")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="the bootstrap's seed")] = 0,
    export: Annotated[Path | None, typer.Option("--export", help="write every vote here as JSONL")] = None,
):
    """The rated leaderboard of the anonymous votes: Bradley-Terry with 95% intervals, rank, online
    Elo, and the win fractions between models."""
    from rich.console import Console

    from ..arena.rating import battle_counts, leaderboard, win_fractions
    from ..checks import whole_number
    from ..runs import Column, Table
    from ..store import Store

    whole_number("--rounds", rounds)
    store = Store.open()
    try:
        votes = store.votes()
    finally:
        store.close()
    if export is not None:
        export.write_text("".join(json.dumps(v, ensure_ascii=False) + "\n" for v in votes), encoding="utf-8")
        err(f"wrote {len(votes)} votes to {export}")
    board = leaderboard(votes, rounds=rounds, seed=seed)
    if not board:
        err("no anonymous votes yet: `llmlab arena battle PROMPT -m A -m B` casts one")
        return
    table = Table([Column("rank", justify="right"), "model", Column("rating", justify="right"), "95% CI",
                   Column("Elo (K=4)", justify="right"), Column("battles", justify="right"),
                   Column("wins", justify="right"), Column("ties", justify="right")],
                  title=f"arena: {sum(v['anonymous'] for v in votes)} anonymous votes", title_justify="left")
    for s in board:
        table.add_row(str(s.rank), s.model, f"{s.rating:.0f}", f"[{s.low:.0f}, {s.high:.0f}]", f"{s.elo:.0f}",
                      str(s.battles), str(s.wins), str(s.ties))
    console = Console()
    console.print(table.to_rich())
    counted = [v for v in votes if v["anonymous"]]
    order = [s.model for s in board]
    fractions, counts = win_fractions(counted), battle_counts(counted)
    matrix = Table(["row beat column", *order], title="share of battles won (battles)", title_justify="left")
    for row in order:
        matrix.add_row(row, *("-" if row == col or (row, col) not in counts else
                              f"{fractions[(row, col)]:.2f} ({counts[(row, col)]})" for col in order))
    console.print(matrix.to_rich())
