"""Shared fixtures: real bundled models (loaded once per session), an isolated call log, offline hubs.

Before any test loads a model in this process, each bundled model is loaded and run in a child
process (``llmlab doctor``'s check). A native crash there cannot end the suite: if the model works
with ``LLMLAB_EXTRA_BUFTS=off``, the suite goes on with that setting and says so at the end (and
test_runs_everywhere fails, since llmlab's own choice crashed); if it still crashes, the tests that
use the model fail with the doctor's words instead of taking the whole run down with a segfault.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CANARY: dict[str, object] = {}  # bundled model -> its doctor line, from a child process


def pytest_sessionstart(session):
    from llmlab.doctor import check

    for alias in ("smollm2", "gemma3-270m"):
        line = check(alias)
        CANARY[alias] = line
        if not line.ok and "LLMLAB_EXTRA_BUFTS=off" in line.fix:
            os.environ["LLMLAB_EXTRA_BUFTS"] = "off"


def pytest_terminal_summary(terminalreporter):
    bad = [line for line in CANARY.values() if not line.ok]
    for line in bad:
        terminalreporter.write_line(f"llama.cpp canary (child process): {line.render()}", red=True)
    if os.environ.get("LLMLAB_EXTRA_BUFTS") == "off" and bad:
        terminalreporter.write_line("the suite ran with LLMLAB_EXTRA_BUFTS=off", red=True)


def canary(alias: str) -> None:
    line = CANARY.get(alias)
    if line is not None and not line.ok and os.environ.get("LLMLAB_EXTRA_BUFTS") != "off":
        pytest.fail(f"{alias} does not run on this machine (checked in a child process): {line.detail}; "
                    f"fix: {line.fix}", pytrace=False)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own data directory and call log, never the user's."""
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLMLAB_DB", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="session")
def smollm2():
    from llmlab import load_model

    canary("smollm2")
    model = load_model("smollm2", log=False, n_ctx=2048)
    yield model
    model.close()


@pytest.fixture(scope="session")
def gemma():
    from llmlab import load_model

    canary("gemma3-270m")
    model = load_model("gemma3-270m", log=False, n_ctx=2048)
    yield model
    model.close()


@pytest.fixture(scope="session")
def lesson_data() -> Path:
    path = SHARED_DATA / "lesson"
    if not path.is_dir():
        pytest.skip(f"shared lesson data not found at {path}")
    return path
