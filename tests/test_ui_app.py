"""The app as a whole: ``llmlab ui`` serves it, building it imports nothing heavy, and the saved
conversations and presets behave in the store."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("gradio")


def test_llmlab_ui_serves_the_app_on_the_port_asked(tmp_path):
    import httpx

    from llmlab.serve.process import ServerProcess

    with ServerProcess(["--db", str(tmp_path / "ui.db"), "ui"], ready_path="/config") as ui:
        config = httpx.get(ui.url + "/config").json()
        tabs = {c["props"].get("label") for c in config["components"] if c.get("type") == "tabitem"}
        assert {"Chat", "Arena", "Evaluate", "Runs", "Probes & bench", "RAG"} <= tabs
        page = httpx.get(ui.url + "/")
        assert page.status_code == 200
        # the page's fonts and scripts are the app's own: nothing to fetch from another host
        assert "fonts.googleapis" not in page.text and "cdn.jsdelivr" not in page.text


def test_building_the_app_imports_nothing_heavy():
    code = ("from llmlab.ui.app import build_app; build_app(); import sys; "
            "print(sorted(m for m in ('torch', 'transformers', 'sklearn', 'chromadb', 'llama_cpp', "
            "'sentence_transformers', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_conversations_and_presets_in_the_store(tmp_path):
    from llmlab.store import Store
    from llmlab.ui import transcript

    store = Store.open(tmp_path / "s.db")
    conv = transcript.new("smollm2", {"temperature": 0.2}, system="Be brief.")
    conv["messages"] = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello",
                                                             "stats": {"completion_tokens": 2}}]
    conv["_next"] = {"1": [["Hello", -0.1, []]]}  # session-only: neither stored nor exported
    cid = store.save_conversation(transcript.persisted(conv))
    conv["id"] = cid
    conv["messages"].append({"role": "user", "content": "Bye"})
    assert store.save_conversation(transcript.persisted(conv)) == cid  # the same row, updated
    again = Store.open(tmp_path / "s.db").conversation(cid)
    assert [m["content"] for m in again["messages"]] == ["Hi", "Hello", "Bye"]
    assert again["system"] == "Be brief." and "_next" not in again
    assert "_next" not in transcript.to_json(conv)
    md = transcript.to_markdown(conv)
    assert "### Assistant" in md and "temperature: `0.2`" in md and "2 reply tokens" in md
    store.save_preset("cold", {"temperature": 0.1})
    store.save_preset("cold", {"temperature": 0.2})
    assert store.presets() == {"cold": {"temperature": 0.2}}


def test_a_base_model_gets_a_transcript_to_continue():
    from llmlab.ui import transcript

    class Base:
        chats = False

    conv = transcript.new("gemma3-270m", {}, system="A friendly chat.")
    conv["messages"] = [{"role": "user", "content": "Hi"}]
    prompt, stop = transcript.as_prompt(Base(), conv)
    assert prompt == "A friendly chat.\nUser: Hi\nAssistant:" and stop == ("\nUser:",)
