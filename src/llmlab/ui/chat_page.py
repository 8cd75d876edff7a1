"""(being written)"""

from __future__ import annotations


def build(wb) -> None:
    import gradio as gr

    gr.Markdown("This page is being written.")
