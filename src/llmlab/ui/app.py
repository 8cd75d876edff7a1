"""The app: one ``gr.Blocks`` with a tab per page, launched alone or mounted into the server.

Offline by construction: analytics are off before gradio is imported, the theme's fonts are the
ones gradio ships (no Google Fonts request), and nothing is shared through gradio's tunnel. The
layout is one column under 768 px, so every page works at a phone's width.
"""

from __future__ import annotations

import importlib
import os

from ..errors import ConfigError
from .workbench import Workbench

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# (tab label, module): each module's build(wb) lays its page out inside the tab
PAGES = [("Chat", "chat_page"), ("Arena", "arena_page"), ("Evaluate", "eval_page"),
         ("Runs", "runs_page"), ("Probes & bench", "probe_page"), ("RAG", "rag_page")]

CSS = """
.llmlab-stats { font-size: 0.85em; opacity: 0.8; }
@media (max-width: 768px) {
  .llmlab-sidebar { min-width: 100% !important; order: 2; }  /* on a phone the chat comes first */
  #chat-main { order: 1; }
}
"""


def _gradio():
    try:
        import gradio as gr
    except ImportError as exc:
        raise ConfigError("the web UI needs gradio: pip install 'llmlab[ui]'") from exc
    return gr


def theme():
    gr = _gradio()
    # the fonts gradio bundles, so the page asks no font server for anything
    # regular and bold: the semibold file gradio ships lacks most letters, so 600 would mix fonts
    return gr.themes.Default(font=[gr.themes.LocalFont("IBM Plex Sans", weights=(400, 700)), "ui-sans-serif",
                                   "system-ui", "sans-serif"],
                             font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"])


def build_app(wb: Workbench | None = None, pages: list[str] | None = None):
    """The Blocks app over ``wb`` (a new ``Workbench`` on the default store if not given); ``pages``
    picks tabs by module name (all by default)."""
    gr = _gradio()
    wb = wb or Workbench()
    with gr.Blocks(title="llmlab", analytics_enabled=False) as demo:
        gr.Markdown("## llmlab\nLoad a model, talk to it, evaluate it, and see how it can mislead you.")
        with gr.Tabs():
            for label, module in PAGES:
                if pages is not None and module not in pages:
                    continue
                page = importlib.import_module(f".{module}", __package__)
                with gr.Tab(label, id=module) as tab:
                    on_open = page.build(wb)  # a page may ask to be refreshed when its tab is opened
                if on_open:
                    tab.select(*on_open, api_name=False)
    demo.workbench = wb
    demo.queue(default_concurrency_limit=4)
    return demo


def launch(wb: Workbench | None = None, *, host: str = "127.0.0.1", port: int | None = None,
           block: bool = True, quiet: bool = False):
    """Serve the app on ``host:port`` (a free port from 7860 up when not given)."""
    demo = build_app(wb)
    demo.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                prevent_thread_lock=not block, quiet=quiet,
                theme=theme(), css=CSS, footer_links=["api"], show_error=True)
    return demo


def mount(app, wb: Workbench | None = None, path: str = "/ui", auth=None):
    """Mount the UI into a FastAPI ``app`` (``llmlab serve`` does, at ``/ui``); ``auth`` is gradio's
    (a (user, password) pair)."""
    gr = _gradio()
    demo = build_app(wb)
    return gr.mount_gradio_app(app, demo, path=path, theme=theme(), css=CSS, footer_links=["api"],
                               show_error=True, auth=auth)
