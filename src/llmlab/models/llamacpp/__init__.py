"""Everything llama.cpp: opening GGUF files and reading their metadata (``loader``, ``gguf``, the CPU
weight-layout policy in ``cpu``), LoRA adapters in GGUF form (``lora``), the one config-to-sampler
mapping (``sampling``), the in-process model (``model``) and the continuous-batching engine with the
model that runs in it (``engine``, ``batched``). Nothing outside this package imports ``llama_cpp``.
"""

from .model import LlamaCppModel

__all__ = ["LlamaCppModel"]
