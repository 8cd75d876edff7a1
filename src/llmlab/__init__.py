"""llmlab: a local-first workbench for using large language models as research instruments.

    >>> from llmlab import load_model, GenerationConfig, Chat
    >>> model = load_model("smollm2")                                  # doctest: +SKIP
    >>> model.generate("Where is Groningen located?", temperature=0).text   # doctest: +SKIP
    >>> load_embedder("minilm").embed(["a cat", "a dog"]).shape           # doctest: +SKIP
    (2, 384)
"""

from .chat import Message
from .config import GenerationConfig
from .conversation import Chat
from .errors import LlmlabError
from .models.base import Model, ModelInfo, Response, Token
from .models.embedders import load_embedder
from .models.registry import load_model

__all__ = ["Chat", "EmbeddingModel", "GenerationConfig", "LlmlabError", "Message", "Model", "ModelInfo",
           "Response", "Token", "agent", "evaluate", "load_embedder", "load_model", "tool"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # evaluate() is imported on first use, so `import llmlab` (and `llmlab --help`) stays light
    if name == "evaluate":
        from .evals.api import evaluate

        return evaluate
    if name == "rag":  # llmlab.rag.ingest / retrieve / ask; chromadb is imported only when they run
        import importlib

        return importlib.import_module(".rag", __name__)
    if name in ("agent", "tool"):  # llmlab.agent(model, tools=[...]), @llmlab.tool
        from . import tools

        return getattr(tools, name)
    if name == "EmbeddingModel":
        from .models.embed import EmbeddingModel

        return EmbeddingModel
    raise AttributeError(f"module 'llmlab' has no attribute {name!r}")
