"""A chat page conversation as data: what the model is sent, what the store keeps, what is exported.

A conversation is a dict: ``id`` (its row in the store once saved), ``title``, ``model``, ``system``,
``settings`` (the sidebar's values) and ``messages``, each ``{"role", "content"}`` plus, on a reply,
``stats`` (time to first token, tokens/s, token counts, how it ended) and ``call`` (its row in the
call log). A tool step shown in the chat carries ``"tool": true`` and is not sent back to the model
as text (the agent loop keeps its own transcript). Keys starting with ``_`` live only in the
browser session (the next-token view's log-probabilities) and are neither stored nor exported.
No gradio here: it is tested on its own.
"""

from __future__ import annotations

import json

from ..chat import Message

BASE_STOP = ("\nUser:",)  # a base model continuing a transcript would write the user's next turn


def new(model: str, settings: dict, system: str = "") -> dict:
    return {"id": None, "title": "", "model": model, "system": system, "settings": dict(settings),
            "messages": []}


def persisted(conv: dict) -> dict:
    """The conversation without its session-only keys (as stored and exported)."""
    return {k: v for k, v in conv.items() if not k.startswith("_")}


def title_of(conv: dict) -> str:
    first = next((m["content"] for m in conv["messages"] if m["role"] == "user"), "")
    first = " ".join(first.split())
    return first[:60] + ("…" if len(first) > 60 else "") or "(empty)"


def turns(conv: dict) -> list[Message]:
    """The messages the model is sent: system first, tool steps left out."""
    out = [Message("system", conv["system"])] if conv.get("system") else []
    out += [Message(m["role"], m["content"]) for m in conv["messages"]
            if m["role"] in ("user", "assistant") and not m.get("tool")]
    return out


def as_prompt(model, conv: dict):
    """What ``model.prompt`` gets: the messages for a chat model; for a base model (no chat
    template) the conversation as a plain transcript it continues, and the stop string that ends
    its turn."""
    messages = turns(conv)
    if model.chats:
        return messages, ()
    lines = [f"{m.content}\n" if m.role == "system" else f"{m.role.title()}: {m.content}\n" for m in messages]
    return "".join(lines) + "Assistant:", BASE_STOP


def stats_of(response) -> dict:
    t, u = response.timings, response.usage
    return {"ttft_s": t.ttft_s, "decode_tps": t.decode_tps, "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens, "total_s": t.total_s,
            "finish_reason": response.finish_reason, "interrupted": response.interrupted}


def stats_line(stats: dict | None) -> str:
    if not stats:
        return ""
    parts = []
    if "tool_calls" in stats:  # an agent's answer: its steps, not one generation's timings
        parts.append(f"{stats['tool_calls']} tool call{'s' * (stats['tool_calls'] != 1)}")
        parts.append(f"the agent stopped: {stats.get('finish_reason')}")
        return " · ".join(parts)
    if stats.get("ttft_s") is not None:
        parts.append(f"first token {stats['ttft_s'] * 1000:.0f} ms")
    if stats.get("decode_tps"):
        parts.append(f"{stats['decode_tps']:.1f} tokens/s")
    parts.append(f"{stats.get('prompt_tokens', 0)} prompt + {stats.get('completion_tokens', 0)} reply tokens")
    if stats.get("interrupted"):
        parts.append("stopped")
    elif stats.get("finish_reason") == "length":
        parts.append("cut off at the token limit")
    return " · ".join(parts)


def to_json(conv: dict) -> str:
    return json.dumps(persisted(conv), indent=2, ensure_ascii=False)


def to_markdown(conv: dict) -> str:
    c = persisted(conv)
    lines = [f"# {c.get('title') or title_of(c)}", "", f"- model: `{c['model']}`"]
    lines += [f"- {k}: `{v}`" for k, v in sorted(c["settings"].items())]
    if c.get("system"):
        lines += ["", "**System:** " + c["system"]]
    for m in c["messages"]:
        who = "Tool" if m.get("tool") else m["role"].title()
        lines += ["", f"### {who}", "", m["content"]]
        if m.get("stats"):
            lines += ["", f"_{stats_line(m['stats'])}_"]
        changed = {k: v for k, v in (m.get("settings") or {}).items() if c["settings"].get(k) != v}
        if changed:  # a reply made with other settings than the conversation's last ones
            lines += ["", "_settings: " + ", ".join(f"{k} {v}" for k, v in sorted(changed.items())) + "_"]
    return "\n".join(lines) + "\n"
