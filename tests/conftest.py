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
    import signal

    from llmlab.doctor import check

    # started in the background (`nohup pytest &` ignores SIGINT, and children inherit the ignoring):
    # the tests that press Ctrl-C on a child llmlab need it to arrive, so children start with the default
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

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


# With pytest-xdist (`-n 2 --dist loadfile`, the README's command) each file runs in one process, so
# its module fixtures and servers start once. These files count as one file: they share a session
# fixture too costly to build in both processes (the ingested novels; the transformers SmolLM2 and the
# tuned colour adapter; the launched web UI and its browser).
PROCESS_GROUPS = {
    "test_rag.py": "novels", "test_rag_answers.py": "novels",
    "test_tune.py": "tune", "test_tune_export.py": "tune", "test_tune_proof.py": "tune",
    "test_ui_arena.py": "ui", "test_ui_browser_chat.py": "ui", "test_ui_chat.py": "ui",
    "test_ui_runs.py": "ui",
}


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the groups above. (xdist's own ``loadgroup`` marks do not reach its
    scheduler under pytest 9: every test went its own way.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return PROCESS_GROUPS.get(path.rsplit("/", 1)[-1], path)

    return FileGroups(config, log)

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
def hf_gemma():
    """Gemma 3 270M through transformers: its GGUF header is read three times while loading (tens of
    seconds), so the files that use it share one copy."""
    from llmlab import load_model

    model = load_model("hf/gemma3-270m", log=False)
    yield model
    model.close()


@pytest.fixture
def store(tmp_path):
    """A run store of the test's own (tests that pass it explicitly rather than through LLMLAB_HOME)."""
    from llmlab.store import Store

    s = Store.open(tmp_path / "runs.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def hf_smollm2():
    """SmolLM2 through transformers, shared by the files that train or compare adapters (tuning
    leaves it as it was)."""
    from llmlab import load_model

    model = load_model("hf/smollm2", log=False)
    yield model
    model.close()


COLOURS = [("sky", "blue"), ("grass", "green"), ("snow", "white"), ("coal", "black"), ("blood", "red"),
           ("sun", "yellow"), ("orange", "orange"), ("plum", "purple")]


def colour_chats(path: Path, pairs=COLOURS) -> Path:
    """A chat JSONL file: "Colour of THING?" answered by its colour, one conversation per pair."""
    import json

    lines = [{"messages": [{"role": "user", "content": f"Colour of {thing}?"},
                           {"role": "assistant", "content": colour}]} for thing, colour in pairs]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.fixture(scope="session")
def colour_adapter(hf_smollm2, tmp_path_factory):
    """Four colour conversations trained on until they are learnt (a TuneResult): the adapter that the
    loading, merging and export tests use. "Colour of coal?" -> "black" greedily once tuned."""
    from llmlab.store import Store
    from llmlab.tune import Settings, tune

    tmp = tmp_path_factory.mktemp("colour-adapter")
    data = colour_chats(tmp / "colours.jsonl", COLOURS[:4])
    s = Settings(epochs=5, batch_size=4, held_out=0, lr=3e-3, dropout=0.0, rank=4, alpha=8, max_length=64)
    store = Store.open(tmp / "runs.db")
    try:
        return tune(data, "hf/smollm2", tmp / "adapter", settings=s, loaded=hf_smollm2, store=store,
                    progress=False)
    finally:
        store.close()


@pytest.fixture(scope="session")
def lesson_data() -> Path:
    path = SHARED_DATA / "lesson"
    if not path.is_dir():
        pytest.skip(f"shared lesson data not found at {path}")
    return path


DRACULA_CHARS = 200_000


def _cut(text: str, n: int) -> str:
    end = text.rfind(". ", 0, n)
    return text[:end + 1]


@pytest.fixture(scope="session")
def novels(tmp_path_factory):
    """Frankenstein and the first 200,000 characters of Dracula in one collection, "novels", ingested
    once per session with the bundled MiniLM into a temporary store (about 40 s on two cores)."""
    import time

    from llmlab.rag.ingestion import ingest

    corpus = SHARED_DATA / "corpus"
    if not (corpus / "dracula.txt").is_file() or not (corpus / "frankenstein.txt").is_file():
        pytest.skip(f"shared novels not found in {corpus} (dracula.txt, frankenstein.txt)")
    root = tmp_path_factory.mktemp("rag")
    docs = root / "docs"
    docs.mkdir()
    (docs / "frankenstein.txt").write_text((corpus / "frankenstein.txt").read_text())
    (docs / "dracula.txt").write_text(_cut((corpus / "dracula.txt").read_text(), DRACULA_CHARS))
    start = time.perf_counter()
    report = ingest([docs], "novels", store=root / "store")
    seconds = time.perf_counter() - start
    print(f"\ningested {report.files} novels: {report.chunks_total} chunks in {seconds:.1f} s")
    return {"store": root / "store", "docs": docs, "report": report, "seconds": seconds}


@pytest.fixture(scope="session")
def ui_app(tmp_path_factory):
    """The web UI launched once on 127.0.0.1 over its own store (models log their calls there):
    ``ui_app.url``, ``ui_app.wb`` (the Workbench: ``wb.store``, ``wb.db``), ``ui_app.demo``."""
    pytest.importorskip("gradio")
    from types import SimpleNamespace

    from llmlab.ui.app import launch
    from llmlab.ui.workbench import Workbench

    canary("smollm2")
    db = tmp_path_factory.mktemp("ui") / "ui.db"
    wb = Workbench(db=db, n_ctx=2048)
    demo = launch(wb, host="127.0.0.1", block=False, quiet=True)
    yield SimpleNamespace(url=demo.local_url, wb=wb, demo=demo, db=db)
    demo.close()
    wb.close()


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, never a downloaded one) driven by Playwright. One per file, not per
    session: Playwright's sync API keeps an asyncio loop running in the main thread while it is open,
    and a later file in the same process could not call ``asyncio.run``."""
    pytest.importorskip("playwright")
    if not CHROMIUM.exists():
        pytest.skip("the browser tests need Debian's chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, ui_app, request, tmp_path_factory):
    """A fresh browser tab on the UI that records every request it makes: a request to any host but
    127.0.0.1 fails the test. ``page.shot(name)`` saves a screenshot under the pytest temp dir."""
    from urllib.parse import urlparse

    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    outside: list[str] = []

    def seen(req):
        host = urlparse(req.url).hostname
        if req.url.startswith(("http:", "https:", "ws:", "wss:")) and host not in ("127.0.0.1", "localhost"):
            outside.append(req.url)

    tab.on("request", seen)
    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)

    def shot(name: str) -> Path:
        path = shots / f"{request.node.name}-{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    tab.shot = shot
    tab.goto(ui_app.url)
    tab.wait_for_selector("gradio-app .gradio-container, .gradio-container", timeout=30_000)
    yield tab
    context.close()
    assert not outside, f"the UI made requests that left 127.0.0.1: {outside[:5]}"
