"""Foundation commands: prompt, chat, tokenize, logs (models and info are in info_cmd.py)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from .main import ModelOpt, app, err

Temperature = Annotated[float | None, typer.Option("--temperature", "-t", help="0 = greedy")]
TopK = Annotated[int | None, typer.Option("--top-k", help="0 = off")]
TopP = Annotated[float | None, typer.Option("--top-p", help="in (0, 1]")]
MaxNew = Annotated[int | None, typer.Option("--max-new-tokens", "-n")]
Seed = Annotated[int | None, typer.Option("--seed")]
Stop = Annotated[list[str] | None, typer.Option("--stop", help="stop string (repeatable)")]
RepeatPenalty = Annotated[float | None, typer.Option("--repeat-penalty", help="1.0 = off")]
NCtx = Annotated[int | None, typer.Option("--n-ctx", help="context window to allocate")]
Threads = Annotated[int | None, typer.Option(
    "--threads", help="CPU threads for a local model (default: every core; on a busy machine fewer "
    "can be many times faster)")]
BaseUrl = Annotated[str | None, typer.Option(
    "--base-url", help="server of an ollama/ or openai/ model (else $OLLAMA_HOST / $OPENAI_BASE_URL)")]
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", help="key for an ollama/ or openai/ server (else $OLLAMA_API_KEY / $OPENAI_API_KEY)")]


def read_stdin() -> str:
    """The prompt from standard input, which must be UTF-8 text."""
    from ..errors import PromptError

    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.start + 1]
        raise PromptError(f"standard input is not UTF-8 text (byte {exc.start}: {bad!r}); convert it, "
                          "e.g. iconv -f latin1 -t utf-8") from None


def _config(temperature, top_k, top_p, max_new_tokens, seed, stop, repeat_penalty):
    from ..config import GenerationConfig

    return GenerationConfig().replace(
        temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
        stop=tuple(stop) if stop else None, repeat_penalty=repeat_penalty)


def _load(model: str, n_ctx: int | None = None, log: bool = True, base_url: str | None = None,
          api_key: str | None = None, threads: int | None = None):
    from ..models.registry import load_model, load_options

    return load_model(model, log=log, **load_options(n_ctx=n_ctx, threads=threads, base_url=base_url,
                                                      api_key=api_key))


def _stream_to_stdout(response) -> None:
    """Print a response as it streams; on Ctrl-C close it so the partial text is logged."""
    it = iter(response)
    try:
        for piece in it:
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        it.close()
        sys.stdout.write("\n")
        err(f"interrupted after {response.usage.completion_tokens} tokens (partial response logged)")
        raise typer.Exit(130) from None
    sys.stdout.write("\n")
    sys.stdout.flush()


def _stats(response) -> str:
    t, u = response.timings, response.usage
    parts = [f"{u.prompt_tokens} prompt + {u.completion_tokens} generated tokens"]
    if t.ttft_s is not None:
        parts.append(f"first token {t.ttft_s * 1000:.0f} ms")
    if t.decode_tps:
        parts.append(f"{t.decode_tps:.1f} tokens/s")
    if t.load_s is not None:
        parts.append(f"load {t.load_s:.2f} s")
    if response.dropped_messages:
        parts.append(f"{response.dropped_messages} old messages dropped to fit the context")
    return ", ".join(parts) + f" [{response.finish_reason}]"


@app.command()
def prompt(
    text: Annotated[str, typer.Argument(help="the prompt; '-' reads it from stdin")],
    model: ModelOpt = "smollm2",
    system: Annotated[str | None, typer.Option("--system", "-s", help="system message")] = None,
    raw: Annotated[bool, typer.Option(
        "--raw", help="complete TEXT as raw text (default for base models)")] = False,
    chat: Annotated[bool, typer.Option(
        "--chat", help="wrap TEXT in the chat template (default for instruct models and remote "
        "servers)")] = False,
    temperature: Temperature = None, top_k: TopK = None, top_p: TopP = None,
    max_new_tokens: MaxNew = None, seed: Seed = None, stop: Stop = None,
    repeat_penalty: RepeatPenalty = None, n_ctx: NCtx = None,
    stats: Annotated[bool, typer.Option("--stats/--no-stats", help="usage and timings on stderr")] = True,
    base_url: BaseUrl = None, api_key: ApiKey = None, threads: Threads = None,
    json_schema: Annotated[str | None, typer.Option(
        "--json-schema", metavar="FILE", help="constrain the output to this JSON schema (llamacpp/ "
        "models); it is checked after generation, exit 1 if it does not match")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="constrain the output to a JSON object")] = False,
):
    """Generate a response, streamed to stdout."""
    from ..chat import Message, check_prompt
    from ..errors import ConfigError
    from ..schema import read_schema_file

    if raw and chat:
        raise ConfigError("--raw and --chat contradict each other; give one")
    if json_schema and json_out:
        raise ConfigError("--json-schema and --json contradict each other; give one")
    schema = read_schema_file(json_schema) if json_schema else (True if json_out else None)
    if text == "-":
        text = read_stdin()
    check_prompt(text)
    config = _config(temperature, top_k, top_p, max_new_tokens, seed, stop, repeat_penalty)
    if schema is not None:
        config = config.replace(json_schema=schema)
    m = _load(model, n_ctx, base_url=base_url, api_key=api_key, threads=threads)
    use_chat = chat or (not raw and m.chats)
    if system and not use_chat:
        err("error: --system needs the chat template; drop --raw")
        raise typer.Exit(1)
    messages = ([Message("system", system)] if system else []) + [Message("user", text)]
    response = m.prompt(messages if use_chat else text, config)
    _stream_to_stdout(response)
    if stats:
        err(_stats(response))
    if schema is not None and (problem := response.json_error):
        err(f"error: {problem}")
        raise typer.Exit(1)


CHAT_HELP = "/exit or /quit to leave, /reset to forget the history, /system TEXT to set the system message"


@app.command()
def chat(
    model: ModelOpt = "smollm2",
    system: Annotated[str | None, typer.Option("--system", "-s")] = None,
    temperature: Temperature = None, top_k: TopK = None, top_p: TopP = None,
    max_new_tokens: MaxNew = None, seed: Seed = None, stop: Stop = None,
    repeat_penalty: RepeatPenalty = None, n_ctx: NCtx = None,
    on_overflow: Annotated[str, typer.Option(
        help="when the history outgrows the context: drop_oldest or error")] = "drop_oldest",
    base_url: BaseUrl = None, api_key: ApiKey = None, threads: Threads = None,
):
    """Interactive multi-turn chat (reads lines from stdin)."""
    from ..conversation import Chat
    from ..errors import ConfigError, PromptError

    if on_overflow not in ("drop_oldest", "error"):
        raise ConfigError("--on-overflow must be drop_oldest or error")
    config = _config(temperature, top_k, top_p, max_new_tokens, seed, stop, repeat_penalty)
    m = _load(model, n_ctx, base_url=base_url, api_key=api_key, threads=threads)
    conversation = Chat(m, system=system, config=config, overflow=on_overflow)
    tty = sys.stdin.isatty()
    err(f"chatting with {m.backend}/{m.info.name}; {CHAT_HELP}")
    while True:
        try:
            line = input(">>> " if tty else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            print()
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit", "/bye"):
            break
        if line == "/reset":
            conversation.reset()
            err("history cleared")
            continue
        if line.startswith("/system"):
            conversation.set_system(line[len("/system"):].strip() or None)
            err("system message set" if conversation.system else "system message removed")
            continue
        if line.startswith("/"):
            err(f"unknown command {line.split()[0]}; {CHAT_HELP}")
            continue
        try:
            response = conversation.stream(line)
        except PromptError as exc:
            err(f"error: {exc}")
            continue
        before = conversation.dropped
        _stream_to_stdout(response)
        if conversation.dropped > before:
            err(f"(dropped the {conversation.dropped - before} oldest messages to fit the context window)")


@app.command()
def tokenize(
    text: Annotated[str, typer.Argument(help="text to tokenize; '-' reads stdin")],
    model: ModelOpt = "smollm2",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    chat: Annotated[bool, typer.Option(
        "--chat", help="the whole prompt `llmlab prompt` sends: TEXT as a user message under the chat "
        "template (control tokens come only from the template)")] = False,
    system: Annotated[str | None, typer.Option("--system", "-s", help="with --chat: a system message")]
    = None,
):
    """Show the token ids and token strings of TEXT, and the share of the context window.

    TEXT is read as a message's text is read: as plain text, even where it spells a control token.
    """
    from ..chat import Message
    from ..errors import ConfigError
    from ..models.base import Token

    if text == "-":
        text = read_stdin()
    if system and not chat:
        raise ConfigError("--system needs --chat")
    m = _load(model, log=False)
    if chat:
        messages = ([Message("system", system)] if system else []) + [Message("user", text)]
        tokens = [Token(i, m.token_text(i)) for i in m.prompt_ids(messages)]
    else:
        tokens = m.tokenize(text)
    ctx = m.info.context_length or m.info.trained_context_length
    if as_json:
        print(json.dumps({"model": f"{m.backend}/{m.info.name}", "ids": [t.id for t in tokens],
                          "tokens": [t.text for t in tokens], "count": len(tokens),
                          "context_length": ctx}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("#", justify="right")
    table.add_column("id", justify="right")
    table.add_column("token")
    for i, t in enumerate(tokens):
        table.add_row(str(i), str(t.id), repr(t.text))
    console = Console()
    console.print(table)
    print(f"ids: {[t.id for t in tokens]}")
    share = f" = {100 * len(tokens) / ctx:.2f}% of the {ctx}-token context window" if ctx else ""
    print(f"{len(tokens)} tokens{share}")


@app.command()
def logs(
    count: Annotated[int, typer.Option("--count", "-n", help="how many (0 = all)")] = 20,
    model: Annotated[str | None, typer.Option("--model", "-m", help="only this model")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="export as JSON")] = False,
):
    """Recent calls from the call log, newest first."""
    from ..errors import ConfigError
    from ..store import Store

    if count < 0:
        raise ConfigError(f"--count must be >= 0 (0 = all), got {count}")
    rows = Store.open(write=False).calls(limit=count or None, model=model)
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} most recent calls")
    for col in ("id", "time", "model", "prompt", "response", "tokens", "tok/s", "end"):
        table.add_column(col)
    for r in rows:
        last = (r["messages"] or [{}])[-1].get("content", "")
        prompt_text = r["prompt"] if r["prompt"] is not None else last
        table.add_row(str(r["id"]), r["ts"][:19].replace("T", " "), f"{r['backend']}/{r['model']}",
                      _clip(prompt_text), _clip(r["response"]),
                      f"{r['prompt_tokens']}+{r['completion_tokens']}",
                      f"{r['decode_tps']:.0f}" if r["decode_tps"] else "",
                      "interrupted" if r["interrupted"] else (r["finish_reason"] or ""))
    Console().print(table)


def _clip(text: str | None, n: int = 40) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"
