"""What a model's stream is made of: typed events, the leaf types every layer above models reads.

A backend's ``stream()`` yields ``Chunk``s. A chunk carries any of: generated text, the
log-probabilities of the tokens behind that text (each with its top alternatives, when the
request's ``GenerationConfig.logprobs`` asks for them), and tool-call deltas (a function name and
argument text arriving piece by piece, as the OpenAI streaming format sends them). The last chunk
carries the finish reason and the token usage. The server, the coming web UI's next-token view
and the agent loop all read these same events; none of them asks which backend made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Token:
    id: int
    text: str


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Timings:
    load_s: float | None = None       # loading the model, once per process
    ttft_s: float | None = None       # call start to first generated text
    prefill_tps: float | None = None  # prompt tokens / time to first token
    decode_tps: float | None = None   # generated tokens after the first / time after the first
    total_s: float | None = None


@dataclass
class TokenLogprob:
    """One token as produced (or as read, for a prompt), its log-probability (None for a first
    prompt token, which has no context) and the ``top`` alternatives as (text, logprob), best first."""
    token: str
    logprob: float | None
    top: list[tuple[str, float]] = field(default_factory=list)
    id: int = -1


@dataclass
class ToolCallDelta:
    """A piece of a tool call: the first piece of call ``index`` has its ``id`` and ``name``; later
    pieces add text to its JSON ``arguments``."""
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class Chunk:
    """One event of a stream. The last chunk of a stream carries the finish reason and usage."""
    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
