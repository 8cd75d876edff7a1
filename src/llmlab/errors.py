"""Every failure a user can cause, as one exception tree.

The CLI prints any ``LlmlabError`` as a single line (no traceback) and exits non-zero; the Python API
raises them as they are. Third-party errors are wrapped with ``raise ... from exc`` so the cause is
kept for anyone who wants it.

    LlmlabError
    ├── ConfigError            invalid generation settings or options (raised before any model loads)
    ├── ModelNotFoundError     a model name that resolves to nothing (lists what exists)
    ├── ModelLoadError         a file that is missing, not GGUF, or that the backend refuses
    ├── MissingDependencyError an optional extra is not installed (names the pip command)
    ├── PromptError            an empty prompt, a chat with no user turn, a model with no chat template
    │   └── ContextOverflowError   prompt + max_new_tokens does not fit the context window
    ├── StoreError             the call log cannot be opened, is locked or is corrupt
    └── BackendError           a backend failed while generating
"""

from __future__ import annotations


class LlmlabError(Exception):
    """Base class of every error llmlab raises on purpose."""


class ConfigError(LlmlabError, ValueError):
    pass


class ModelNotFoundError(LlmlabError, LookupError):
    pass


class ModelLoadError(LlmlabError):
    pass


class MissingDependencyError(LlmlabError, ImportError):
    def __init__(self, package: str, extra: str):
        super().__init__(
            f"{package} is not installed; run: pip install 'llmlab[{extra}]'"
        )
        self.package = package
        self.extra = extra


class PromptError(LlmlabError, ValueError):
    pass


class ContextOverflowError(PromptError):
    def __init__(self, prompt_tokens: int, max_new_tokens: int, context_length: int):
        super().__init__(
            f"prompt is {prompt_tokens} tokens + max_new_tokens {max_new_tokens} = "
            f"{prompt_tokens + max_new_tokens}, beyond the context window of {context_length} tokens"
            " (shorten the prompt, lower --max-new-tokens, or for a chat let old turns drop)"
        )
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.context_length = context_length


class StoreError(LlmlabError):
    pass


class BackendError(LlmlabError):
    pass
