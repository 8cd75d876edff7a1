"""Every failure a user can cause, as one exception tree.

The CLI prints any ``LlmlabError`` as a single line (no traceback) and exits non-zero; the Python API
raises them as they are. Third-party errors are wrapped with ``raise ... from exc`` so the cause is
kept for anyone who wants it.

    LlmlabError
    ├── ConfigError            invalid generation settings or options (raised before any model loads)
    ├── ModelNotFoundError     a model name that resolves to nothing (lists what exists)
    ├── ModelLoadError         a file that is missing, not GGUF, or that the backend refuses
    ├── MissingDependencyError an optional extra is not installed (names the pip command)
    ├── OutputError            structured output that does not parse or match its JSON schema
    ├── PromptError            an empty prompt, a chat with no user turn, a model with no chat template
    │   └── ContextOverflowError   prompt + max_new_tokens does not fit the context window
    ├── StoreError             the call log cannot be opened, is locked or is corrupt
    ├── TaskError              an unknown task, or a task YAML file that cannot be used
    ├── DataError              a dataset that cannot be evaluated: missing file or column, empty,
    │                          not UTF-8, labels outside the task's set, a row beyond the context
    ├── SuiteError             an unknown probe suite, or a malformed suite file (names file and line)
    ├── FlowError              a flow file that cannot be used (names file and line), or a flow that
    │                          does not fit its data (a column or step it reads is not there)
    ├── RagError               retrieval: a document that cannot be read, an empty folder
    │   ├── CollectionNotFoundError  no collection of that name (did-you-mean over existing ones)
    │   ├── CollectionBusyError      another process is writing the collection now
    │   ├── EmbedderMismatchError    the collection was embedded with another model (names the fix)
    │   └── StoreUnreachableError    a Chroma or Qdrant server that does not answer (names the URL and
    │                                how to start one)
    └── BackendError           a backend failed while generating
        ├── ServerUnreachableError   no answer from a remote server (refused, timed out)
        ├── AuthenticationError      the server refused the API key (HTTP 401/403)
        ├── RemoteModelNotFoundError the server does not have that model (also a ModelNotFoundError)
        ├── ServerBusyError          still 429/503 after the retries
        └── NotSupportedError        the server cannot do this (no tokenizer, no log-probabilities)
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


class OutputError(LlmlabError, ValueError):
    pass


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


class TransientError(BackendError):
    """A server that may answer if asked again, or another server of the pool: a run re-runs the
    unit it happened in (``runs.runner``) before giving up."""


class ConnectionDroppedError(TransientError):
    """The server closed the connection in the middle of an answer."""


class ServerUnreachableError(TransientError):
    pass


class AuthenticationError(BackendError):
    pass


class RemoteModelNotFoundError(BackendError, ModelNotFoundError):
    pass


class ServerBusyError(TransientError):
    pass


class NotSupportedError(BackendError, NotImplementedError):
    pass


class SuiteError(LlmlabError, ValueError):
    """An unknown probe suite, or a suite file that cannot be used; the message names file and line."""


class FlowError(LlmlabError, ValueError):
    """A malformed flow file, or one that reads what is not there; the message names file and line."""


class TaskError(LlmlabError, ValueError):
    """An unknown task name, or a task file that is malformed (the message names the file)."""


class DataError(LlmlabError, ValueError):
    """A dataset that cannot be evaluated as it is; the message names the file and what to change."""


class RagError(LlmlabError, ValueError):
    """Retrieval-augmented generation: a document that cannot be read (names the file), nothing to ingest."""


class CollectionNotFoundError(RagError, LookupError):
    pass


class CollectionBusyError(RagError):
    pass


class EmbedderMismatchError(RagError):
    pass


class StoreUnreachableError(RagError):
    """A vector store server (``--store chroma+http://...``, ``qdrant+http://...``) that does not answer."""
