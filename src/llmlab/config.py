"""Generation settings with one meaning on every backend, and where llmlab keeps its files.

``temperature=0`` means greedy decoding everywhere, silently; so does ``do_sample=False``. With a
``seed``, sampling reproduces run to run on the same backend (not across backends: their random
number generators differ). ``repeat_penalty=1.0`` means no penalty, as in both llama.cpp and
transformers. Values are checked when the config is built, so a bad setting fails before any model
loads; that includes ``json_schema`` (structured output, see ``schema.py``): not valid JSON Schema, or
asking for what a grammar cannot enforce, is one ``ConfigError`` line; and ``tools`` (tool calling,
see ``tools/spec.py``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 0.8
    do_sample: bool = True
    top_k: int = 40  # 0 disables top-k
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    repeat_penalty: float = 1.0
    # log-probabilities in the stream's chunks: None none, 0 the chosen token's, n also the n best
    logprobs: int | None = None
    # structured output: a JSON schema dict (True: any JSON object; a pydantic model class is read
    # through model_json_schema()); checked here, enforced by a grammar where the model can ``grammar``
    json_schema: dict | None = field(default=None, hash=False)
    # tool calling: tool definitions in the OpenAI chat format ({"type": "function", "function":
    # {"name", "description", "parameters"}}; see ``llmlab.tools``), and whether the model may answer
    # without a call: "auto", "none", "required" or one tool's name
    tools: tuple = field(default=(), hash=False)
    tool_choice: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop or ()))
        if self.json_schema is not None:
            from .schema import as_schema, check_schema

            object.__setattr__(self, "json_schema", as_schema(self.json_schema))
            if self.json_schema is not None:
                check_schema(self.json_schema)
        if self.tools or self.tool_choice != "auto":
            from .tools.spec import check_tool_choice, tool_specs

            object.__setattr__(self, "tools", tool_specs(self.tools))
            check_tool_choice(self.tool_choice, self.tools)
        self._check()

    def _check(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"invalid generation setting: {msg}")

        if not _is_int(self.max_new_tokens) or not 1 <= self.max_new_tokens <= INT32:
            raise bad(f"max_new_tokens must be a whole number >= 1, got {self.max_new_tokens!r}")
        if not _is_number(self.temperature) or not 0 <= self.temperature <= 1e6:
            raise bad(f"temperature must be >= 0 (0 = greedy) and finite, got {self.temperature!r}")
        if not isinstance(self.do_sample, bool):
            raise bad(f"do_sample must be true or false, got {self.do_sample!r}")
        if not _is_int(self.top_k) or not 0 <= self.top_k <= INT32:
            raise bad(f"top_k must be a whole number >= 0 (0 = off), got {self.top_k!r}")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise bad(f"top_p must be in (0, 1], got {self.top_p!r}")
        # llama.cpp keeps a 32-bit seed: a larger one would silently become another seed
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**32 - 1):
            raise bad(f"seed must be a whole number from 0 to {2**32 - 2}, got {self.seed!r}")
        if not _is_number(self.repeat_penalty) or not 0 < self.repeat_penalty <= 1e6:
            raise bad(f"repeat_penalty must be > 0 (1.0 = off), got {self.repeat_penalty!r}")
        if self.logprobs is not None and (not _is_int(self.logprobs) or not 0 <= self.logprobs <= 20):
            raise bad(f"logprobs must be a whole number from 0 to 20 (None = off), got {self.logprobs!r}")
        if any(not isinstance(s, str) or s == "" or not _encodable(s) for s in self.stop):
            raise bad(f"stop must be non-empty strings of valid Unicode, got {list(self.stop)!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or not self.do_sample

    def replace(self, **changes) -> GenerationConfig:
        """A copy with some settings changed; ``None`` values are ignored (handy for CLI flags)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown generation setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        if d["logprobs"] is None:  # not asked for: the settings (and fingerprints) read as before
            del d["logprobs"]
        if d["json_schema"] is None:
            del d["json_schema"]
        if not self.tools:
            del d["tools"]
        else:
            d["tools"] = list(self.tools)
        if self.tool_choice == "auto":
            del d["tool_choice"]
        return d


INT32 = 2**31 - 1  # what llama.cpp's int fields hold
DEFAULT_MAX_CTX = 8192  # a larger trained window is capped to keep the KV cache small on a laptop


def default_threads() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" gives
        return False
    return True


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # rejects NaN


def data_dir() -> Path:
    """Where llmlab keeps its files: ``$LLMLAB_HOME``, else the user's data directory."""
    if env := os.environ.get("LLMLAB_HOME"):
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("llmlab", appauthor=False))


def default_db_path() -> Path:
    """The call log: ``$LLMLAB_DB``, else ``llmlab.db`` in the data directory."""
    if env := os.environ.get("LLMLAB_DB"):
        return Path(env).expanduser()
    return data_dir() / "llmlab.db"


def prepare_out(path) -> Path:
    """Make sure ``--out`` can take the files a run writes, before the run: a folder that exists or
    can be made, and that is writable. Fails in one line, not with a traceback after an hour."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; name a folder (it is made if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot make this folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: this folder is not writable")
    return out


def prepare_out_file(path, suffixes: tuple[str, ...], what: str) -> Path:
    """``--out`` for a single file: one of ``suffixes`` (``what`` names them in the error), not a folder,
    in a folder that exists or can be made, writable (and so is the file, if it is there)."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in suffixes:
        raise ConfigError(f"--out {out}: name a {what} file")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name a {what} file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot make its folder ({exc.strerror or exc})") from None
    if not os.access(out.parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError(f"--out {out}: not writable")
    return out
