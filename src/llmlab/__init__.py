"""llmlab: a local-first workbench for using large language models as research instruments.

    >>> from llmlab import load_model, GenerationConfig, Chat
    >>> model = load_model("smollm2")                                  # doctest: +SKIP
    >>> model.generate("Where is Groningen located?", temperature=0).text   # doctest: +SKIP
"""

from .chat import Message
from .config import GenerationConfig
from .conversation import Chat
from .errors import LlmlabError
from .models.base import Model, ModelInfo, Response, Token
from .models.registry import load_model

__all__ = ["Chat", "GenerationConfig", "LlmlabError", "Message", "Model", "ModelInfo", "Response",
           "Token", "evaluate", "load_model"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # evaluate() is imported on first use, so `import llmlab` (and `llmlab --help`) stays light
    if name == "evaluate":
        from .evals.api import evaluate

        return evaluate
    raise AttributeError(f"module 'llmlab' has no attribute {name!r}")
