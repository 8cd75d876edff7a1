"""Shared fixtures: real bundled models (loaded once per session), an isolated call log, offline hubs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own data directory and call log, never the user's."""
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLMLAB_DB", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="session")
def smollm2():
    from llmlab import load_model

    model = load_model("smollm2", log=False, n_ctx=2048)
    yield model
    model.close()


@pytest.fixture(scope="session")
def gemma():
    from llmlab import load_model

    model = load_model("gemma3-270m", log=False, n_ctx=2048)
    yield model
    model.close()


@pytest.fixture(scope="session")
def lesson_data() -> Path:
    path = SHARED_DATA / "lesson"
    if not path.is_dir():
        pytest.skip(f"shared lesson data not found at {path}")
    return path
