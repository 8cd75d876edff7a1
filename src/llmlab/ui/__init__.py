"""The llmlab web UI: one offline Gradio 6 app over everything llmlab does.

``llmlab ui`` launches it; ``llmlab serve`` mounts it at ``/ui``. Each page is its own module
(``chat_page``, ``arena_page``, ``eval_page``, ``runs_page``, ``probe_page``, ``rag_page``) with a
``build(wb)`` that lays the page out inside its tab; ``workbench.Workbench`` is what they share
(loaded models, the store). gradio is imported only by ``app.py`` and the pages, and a page imports
what it runs (pandas, chromadb, torch) only when it runs it.
"""

from __future__ import annotations

from .workbench import Workbench, config_from

__all__ = ["Workbench", "build_app", "config_from", "launch", "mount"]


def __getattr__(name: str):
    if name in ("build_app", "launch", "mount"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'llmlab.ui' has no attribute {name!r}")
