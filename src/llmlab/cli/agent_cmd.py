"""``llmlab agent``: a model with tools answers a request; agent tasks are scored across models.

    llmlab agent run "What is 17 * 23?" --tool calculator
    llmlab agent run "How many days from 2026-01-01 to 2026-03-01?" --tool dates --tool calculator
    llmlab agent eval builtin -m smollm2 -m gemma3-270m --out agent-out
    llmlab agent eval my_tasks.jsonl -m smollm2 --repeats 4 -t 0.7      # pass^k over sampled runs
    llmlab agent tools                                                   # the built-in tools

Every step is printed as it happens (each model reply, each call with its result or error) and every
model reply is in the call log. An evaluation is a stored run per model: Ctrl-C keeps the finished
trials and the same command resumes; ``llmlab runs show ID`` re-opens it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .foundation import NCtx, Threads
from .main import BalanceOpt, ConcurrencyOpt, ModelOpt, RpmOpt, TpmOpt, app, err

agent_app = typer.Typer(help="Tool calling: run an agent with tools, evaluate agents on tasks.",
                        no_args_is_help=True)
app.add_typer(agent_app, name="agent")

ToolOpt = Annotated[list[str], typer.Option(
    "--tool", help="a built-in tool: calculator, dates, rag:COLLECTION, search:FOLDER, files:FOLDER "
    "(repeatable; `llmlab agent tools` lists them)")]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="where rag: collections live (as for llmlab rag)")]


@agent_app.command("tools")
def tools_command():
    """List the built-in tools."""
    from ..tools.builtin import BUILTIN

    for name, what in BUILTIN.items():
        print(f"{name:16} {what}")


@agent_app.command("run")
def run_command(
    request: Annotated[str, typer.Argument(help="what to ask ('-' reads stdin)", show_default=False)],
    model: ModelOpt = "smollm2",
    tool: ToolOpt = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="a system message")] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", help="most model replies before it stops")] = 6,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", help="per reply")] = 128,
    temperature: Annotated[float, typer.Option("--temperature", "-t")] = 0.0,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show calls of tools with side effects "
                                          "without running them")] = False,
    unconstrained: Annotated[bool, typer.Option("--unconstrained", help="no grammar for the call format "
                                                "(a baseline; local models only)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole run as JSON")] = False,
    store: StoreOpt = None, n_ctx: NCtx = None, threads: Threads = None,
):
    """Answer REQUEST with a model that may call tools; prints each step as it happens."""
    from ..config import GenerationConfig
    from ..errors import ConfigError
    from ..models.registry import load_model, load_options
    from ..tools import Agent, builtin_tools
    from ..tools.agent import describe

    if request == "-":
        from .foundation import read_stdin

        request = read_stdin()
    if not tool:
        raise ConfigError("give at least one --tool (`llmlab agent tools` lists them)")
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    tools = builtin_tools(tool, store=store)
    loaded = load_model(model, **load_options(n_ctx=n_ctx, threads=threads))
    try:
        agent = Agent(loaded, tools, system=system, max_steps=max_steps, dry_run=dry_run, config=config,
                      constrained=not unconstrained,
                      on_step=None if as_json else (lambda step: typer.echo(describe(step), err=True)))
        result = agent.run(request)
    finally:
        loaded.close()
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    if result.answer is not None:
        print(result.answer)
        return
    why = {"step_limit": f"it reached --max-steps {max_steps} without an answer",
           "cut_off": f"a reply was cut off at --max-new-tokens {max_new_tokens}",
           "interrupted": "it was interrupted",
           "error": f"a reply failed: {result.steps[-1].error}"}[result.stopped]
    err(f"no answer: {why}")
    raise typer.Exit(1)


@agent_app.command("eval")
def eval_command(
    tasks: Annotated[str, typer.Argument(help="a tasks .jsonl file, or 'builtin'", show_default=False)],
    model: Annotated[list[str], typer.Option("--model", "-m", help="repeatable: one row per model")] = None,
    repeats: Annotated[int, typer.Option("--repeats", "-k", help="trials per task (pass^k)")] = 1,
    temperature: Annotated[float, typer.Option("--temperature", "-t")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="trial t samples with seed + t")] = 0,
    max_steps: Annotated[int, typer.Option("--max-steps")] = 6,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n")] = 96,
    unconstrained: Annotated[bool, typer.Option(
        "--unconstrained", help="also run each local model without the call grammar (a baseline)")] = False,
    no_examples: Annotated[bool, typer.Option(
        "--no-examples", help="show the model no worked examples")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N tasks")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="write the table and every trial here")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="recompute instead of resuming")] = False,
    store: StoreOpt = None, n_ctx: NCtx = None, threads: Threads = None,
    concurrency: ConcurrencyOpt = 1, rpm: RpmOpt = None, tpm: TpmOpt = None, balance: BalanceOpt = None,
):
    """Score agents on tasks: calls matched by structure (BFCL), irrelevance, answers, pass^k."""
    from ..checks import whole_number
    from ..config import prepare_out
    from ..models.registry import check_options, load_model, load_options
    from ..tools.evaluate import AgentEvalResult, agent_eval

    models = model or ["smollm2"]
    whole_number("--concurrency", concurrency)
    if out is not None:
        prepare_out(out)
    options = load_options(n_ctx=n_ctx, threads=threads, rpm=rpm, tpm=tpm, balance=balance)
    for name in models:  # a bad option fails before any model loads
        check_options(name, options)
    result = AgentEvalResult(tasks)
    modes = [True, False] if unconstrained else [True]
    for name in models:
        loaded = load_model(name, log=False, **options)
        try:
            for constrained in modes:
                if not constrained and loaded.can("tools"):
                    continue  # native tool calls have no grammar to leave out
                part = agent_eval(tasks, [loaded], repeats=repeats, temperature=temperature, seed=seed,
                                  max_new_tokens=max_new_tokens, constrained=constrained,
                                  examples=not no_examples, max_steps=max_steps, limit=limit, fresh=fresh,
                                  progress=True, store=store, concurrency=concurrency)
                result.rows += part.rows
        finally:
            loaded.close()
    result.print()
    if out is not None:
        for path in result.save(out):
            err(f"wrote {path}")
