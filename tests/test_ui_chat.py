"""The chat page through its API (gradio_client against the launched app, the bundled SmolLM2), and
the UI mounted at /ui by ``llmlab serve`` (FastAPI's TestClient)."""

from __future__ import annotations

import html
import json

import pytest

pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def client(ui_app):
    from gradio_client import Client

    return Client(ui_app.url, verbose=False)


def chat(client, text, *, temperature=0.0, top_p=0.95, top_k=40, max_new_tokens=24, repeat_penalty=1.0,
         seed=-1, model="smollm2", system=""):
    """Submit a message; the job streams (chat log, stats, saved list, JSON export, Markdown export, box)."""
    return client.submit(text, model, system, temperature, top_p, top_k, max_new_tokens, repeat_penalty, seed,
                         False, False, api_name="/chat")


def text_of(message) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def last_call(ui_app) -> dict:
    return ui_app.wb.store.calls(limit=1)[0]


def test_a_reply_streams_with_the_sidebar_settings_and_is_kept(client, ui_app):
    job = chat(client, "Where is Groningen located?", temperature=0.35, top_k=7, max_new_tokens=20, seed=5)
    outs = list(job)
    partial = [text_of(out[0][-1]) for out in outs if out[0] and out[0][-1]["role"] == "assistant"]
    history, stats, _, exported, _, _ = job.result()
    reply = text_of(history[-1])
    assert reply and outs[0][-1] == ""  # the message box empties as the message is sent
    assert len({p for p in partial if p}) >= 3, "the reply arrived in one piece, not streamed"
    assert all(reply.startswith(p) for p in partial)
    assert "first token" in stats and "tokens/s" in stats and "20 reply tokens" in stats
    call = last_call(ui_app)
    settings = call["settings"]  # the sliders' values reached the model
    assert (settings["temperature"], settings["top_k"], settings["max_new_tokens"], settings["seed"]) == \
        (0.35, 7, 20, 5)
    assert call["response"] == reply and not call["interrupted"]
    saved = ui_app.wb.store.conversations()[0]
    assert [m["content"] for m in saved["messages"]] == ["Where is Groningen located?", reply]
    assert saved["messages"][1]["call"] == call["id"] and saved["settings"]["top_k"] == 7
    data = json.loads(open(exported, encoding="utf-8").read())  # the export, as downloaded
    assert data["messages"][1]["content"] == reply and data["settings"]["temperature"] == 0.35


def test_stop_ends_decoding_and_keeps_the_partial_reply(ui_app):
    from gradio_client import Client

    client = Client(ui_app.url, verbose=False)  # its own session: Stop stops this session's reply only
    job = chat(client, "Write a long story about a dragon who learns to cook.", temperature=0.8,
               max_new_tokens=600, seed=1)
    for out in job:
        if out[0] and out[0][-1]["role"] == "assistant" and len(text_of(out[0][-1]).split()) >= 5:
            client.predict(api_name="/stop")
            break
    history, stats, *_ = job.result()
    reply = text_of(history[-1])
    call = last_call(ui_app)
    assert "stopped" in stats
    assert call["interrupted"] == 1 and call["finish_reason"] == "interrupted"
    assert call["response"] == reply and len(reply.split()) >= 5
    assert call["completion_tokens"] < 300


def test_the_next_token_view_shows_what_the_model_weighed(client):
    chat(client, "Name a fruit.", temperature=0.0, max_new_tokens=8).result()
    replies, temperature, top_k, _ = client.predict(api_name="/next_token_replies")
    assert (temperature, top_k) == (0.0, 40)  # the view starts from the chat's settings
    index = replies["value"] if isinstance(replies, dict) else replies
    shown_at = []
    for pos in range(3):
        context, table, note = client.predict(index, pos, 1.0, 10, 0.95, api_name="/next_token")
        rows = table["data"]
        p = [r[1] for r in rows]
        assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1.0001
        drawn = [r[3] for r in rows]
        assert sum(drawn) == pytest.approx(1.0, abs=1e-3) and rows[0][2] == "yes"
        assert "alternatives shown hold" in note
        shown_at.append((context, rows[0][0]))
    # the reply was greedy, so each token written is the best alternative at its point
    for context, best in shown_at:
        assert f"<mark><b>[{html.escape(best)}]</b></mark></span>" in context
    # temperature 0 in the view leaves the best token alone
    _, table, _ = client.predict(index, 0, 0.0, 10, 0.95, api_name="/next_token")
    assert [r[3] for r in table["data"]][:2] == [1.0, 0.0]


def test_presets_save_and_load(client):
    client.predict("cold", 0.1, 0.5, 5, 64, 1.2, 42, True, False, api_name="/save_preset")
    assert client.predict("cold", api_name="/load_preset") == (0.1, 0.5, 5, 64, 1.2, 42, True, False)
    with pytest.raises(Exception, match="no preset named"):
        client.predict("warm", api_name="/load_preset")


def test_a_conversation_reopens_in_a_restarted_app(client, ui_app):
    from gradio_client import Client

    from llmlab.ui.app import launch
    from llmlab.ui.workbench import Workbench

    chat(client, "Say hello.", max_new_tokens=8).result()
    saved = ui_app.wb.store.conversations()[0]
    wb = Workbench(db=ui_app.db)  # a new process would see just this: the store on disk
    demo = launch(wb, block=False, quiet=True)
    try:
        out = Client(demo.local_url, verbose=False).predict(saved["id"], api_name="/open_conversation")
    finally:
        demo.close()
        wb.close()
    history, model = out[0], out[5]
    assert [text_of(m) for m in history] == [m["content"] for m in saved["messages"]]
    assert model == "smollm2"


def test_base_and_instruct_side_by_side(client):
    base, instruct = client.predict("The capital of France is", "gemma3-270m", "smollm2", 12, 0.0,
                                    api_name="/base_vs_instruct")
    assert base.strip() and instruct.strip() and base != instruct


def test_an_empty_message_is_refused_in_one_line(client):
    with pytest.raises(Exception, match="type a message first"):
        chat(client, "   ").result()


def test_the_ui_is_mounted_at_ui_under_the_server(tmp_path):
    from fastapi.testclient import TestClient

    from llmlab.serve.app import create_app
    from llmlab.serve.models import ServedModels
    from llmlab.ui.workbench import Workbench

    wb = Workbench(db=tmp_path / "serve.db")
    app = create_app(ServedModels(), ui=wb, api_key="sesame")
    with TestClient(app) as http:
        page = http.get("/ui/")
        assert page.status_code == 200 and "gradio" in page.text.lower()
        assert http.get("/v1/models").status_code == 401  # the API still wants its key
        assert http.get("/v1/models", headers={"Authorization": "Bearer sesame"}).status_code == 200
        assert http.get("/ui/config").status_code in (401, 403)  # the UI wants a login...
        login = http.post("/ui/login", data={"username": "llmlab", "password": "sesame"})
        assert login.status_code == 200
        config = http.get("/ui/config").json()  # ...and then serves the app
        ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
        assert {"chat-input", "chat-stop", "chat-log"} <= ids
    wb.close()


def test_a_reply_read_aloud_and_a_spoken_message(client, tmp_path):
    import shutil
    import wave

    from gradio_client import handle_file

    if not shutil.which("espeak-ng"):
        pytest.skip("read-aloud needs espeak-ng (apt-get install espeak-ng)")
    chat(client, "Say hello.", max_new_tokens=8).result()
    with wave.open(client.predict(api_name="/read_aloud"), "rb") as w:
        assert w.getnframes() / w.getframerate() > 0.2
    pytest.importorskip("pocketsphinx")
    from llmlab.ui.voice import speak

    heard = client.predict(handle_file(str(speak("red green blue", tmp_path))), api_name="/transcribe")
    assert {"green", "blue"} <= set(heard.split())
