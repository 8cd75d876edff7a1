"""What the run pages (Evaluate, Runs, Probes & bench, RAG) share: errors, progress, tables, files.

- ``one_line``: a handler's ``LlmlabError`` (or a bad value the user typed) becomes ``gr.Error``
  with llmlab's own one-line message, so the page shows it in a toast and nothing crashes.
- ``GradioBar``: the rich ``Progress`` calls llmlab's runner makes (``add_task``/``update``/
  ``advance``) drawn as gradio's live progress bar instead of a terminal bar.
- ``frame``: a ``llmlab.runs.Table`` as a pandas DataFrame for ``gr.Dataframe``.
- ``upload_path``: what ``gr.File`` hands a handler (a path, a FileData dict) as one path.

What it gives up: gradio shows one bar at a time, so runs with several systems show the current
system's bar (named after it), not one bar per system as the terminal does. Imports no gradio at
module level; pandas only inside ``frame``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


@contextmanager
def one_line():
    """Turn llmlab's own errors into ``gr.Error`` with their one-line message."""
    import gradio as gr

    from ..errors import LlmlabError

    try:
        yield
    except gr.Error:
        raise
    except LlmlabError as exc:
        raise gr.Error(_first_line(exc)) from exc
    except (ValueError, OSError) as exc:  # a number typed wrong, a file that vanished
        raise gr.Error(_first_line(exc)) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return without_upload_dirs(text.splitlines()[0])


def without_upload_dirs(text: str) -> str:
    """A message about an uploaded file names the file, not gradio's upload folder it sits in."""
    import re
    import tempfile

    return re.sub(re.escape(tempfile.gettempdir()) + r"/gradio/[0-9a-f]{16,}/", "", text)


class GradioBar:
    """rich's ``Progress`` interface over ``gr.Progress``: one live bar for the run in hand."""

    def __init__(self, progress):
        self.progress = progress
        self.tasks: dict[int, list] = {}  # id -> [description, completed, total]

    def add_task(self, description: str, total: int | None = None, **_) -> int:
        tid = len(self.tasks)
        self.tasks[tid] = [description, 0, total]
        self._draw(tid)
        return tid

    def update(self, tid: int, completed: int | None = None, **_) -> None:
        if completed is not None:
            self.tasks[tid][1] = completed
        self._draw(tid)

    def advance(self, tid: int, advance: int = 1) -> None:
        self.tasks[tid][1] += advance
        self._draw(tid)

    def _draw(self, tid: int) -> None:
        desc, done, total = self.tasks[tid]
        if self.progress is not None:
            self.progress((done, total), desc=desc, unit="items")


def frame(table):
    """A ``llmlab.runs.Table`` as a DataFrame (every cell as it would print)."""
    import pandas as pd

    return pd.DataFrame([["" if x is None else str(x) for x in row] for row in table.rows],
                        columns=table.names)


def upload_path(file) -> Path | None:
    """The path of an uploaded file, whatever shape gradio handed it in (None when there is none)."""
    if file is None:
        return None
    if isinstance(file, dict):
        file = file.get("path") or file.get("name")
    file = getattr(file, "name", file)
    return Path(file) if file else None


def upload_paths(files) -> list[Path]:
    if files is None:
        return []
    files = files if isinstance(files, list) else [files]
    return [p for p in (upload_path(f) for f in files) if p is not None]


def rag_store(wb) -> Path:
    """Where the UI keeps RAG collections: next to the Workbench's store, so a UI started on its own
    call log (the tests' is a temporary one) keeps its collections with it; else the default."""
    if wb.db:
        return Path(wb.db).expanduser().parent / "rag"
    from ..config import data_dir

    return data_dir() / "rag"
