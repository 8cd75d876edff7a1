"""The chat page: talk to any model with the settings in view, and look inside its replies.

Three sub-tabs. **Conversation**: streamed replies, Stop (the model stops decoding; the partial reply
is kept and logged as interrupted), retry, undo and edit a turn; a sidebar with the model, system
prompt, sampling settings, JSON output and tools, presets, the saved conversations (kept in the
store after every turn, so they survive a restart) and exports as JSON and Markdown; per reply the
time to first token, tokens/s and token counts. **Next token**: for any token of a reply, the
alternatives the model weighed and how temperature, top-k and top-p reshape them. **Base vs
instruct**: one prompt, a base model continuing it and an instruct model answering it.

With tools on, a reply is an agent run (``llmlab.tools.agent``): its tool calls are shown as steps
and the answer arrives whole, not streamed, and Stop waits for the current step.
"""

# no ``from __future__ import annotations``: gradio reads the handlers' annotations (gr.Request,
# gr.RetryData) at run time to know what to pass them
import tempfile
from pathlib import Path

from ..errors import LlmlabError
from . import base_instruct, next_token, transcript
from .next_token import N_TOP
from .workbench import DEFAULTS, config_from

SETTINGS = list(DEFAULTS)  # the order the sliders are passed to every handler


def build(wb) -> None:
    import gradio as gr

    running: dict[str, object] = {}  # browser session -> the response it is streaming (for Stop)
    exports = Path(tempfile.mkdtemp(prefix="llmlab-ui-"))

    def fail(exc: Exception):
        return gr.Error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def settings_of(values) -> dict:
        return dict(zip([*SETTINGS, "json", "tools"], values, strict=True))

    def conversation_choices():
        return [(f"#{c['id']} {c['title']} ({c['model']})", c["id"]) for c in wb.store.conversations()]

    def view(conv):
        out = []
        for m in conv["messages"]:
            msg = {"role": m["role"], "content": m["content"]}
            if m.get("tool"):
                msg["metadata"] = {"title": m.get("title", "tool")}
            out.append(msg)
        return out

    def files(conv):
        if not conv["messages"]:
            return None, None
        stem = exports / f"conversation-{conv['id'] or 'new'}"
        js, md = stem.with_suffix(".json"), stem.with_suffix(".md")
        js.write_text(transcript.to_json(conv), encoding="utf-8")
        md.write_text(transcript.to_markdown(conv), encoding="utf-8")
        return str(js), str(md)

    def save(conv) -> None:
        conv["title"] = transcript.title_of(conv)  # again each turn: an edit may change the first turn
        conv["id"] = wb.store.save_conversation(transcript.persisted(conv))

    def finished(conv):
        """The outputs once a turn is over: chat, stats, state, saved list, the two exports."""
        save(conv)
        last = next((m for m in reversed(conv["messages"]) if m["role"] == "assistant"), {})
        return (view(conv), transcript.stats_line(last.get("stats")), conv,
                gr.update(choices=conversation_choices(), value=conv["id"]), *files(conv))

    def generate(conv, request):
        """Answer the conversation's last user message, streaming; yields the outputs of a turn."""
        key = request.session_hash if request else "-"
        s = conv["settings"]
        try:
            if s.get("tools"):
                yield from agent_reply(conv)
                return
            with wb.using(conv["model"]) as model:
                prompt, stop = transcript.as_prompt(model, conv)
                config = config_from(s, json_schema=True if s.get("json") else None, stop=stop,
                                     logprobs=N_TOP if model.can("logprobs") else None)
                response = model.prompt(prompt, config, overflow="drop_oldest")
                running[key] = response
                reply = {"role": "assistant", "content": ""}
                conv["messages"].append(reply)
                try:
                    for piece in response:
                        reply["content"] += piece
                        yield view(conv), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
                finally:
                    running.pop(key, None)
                reply["stats"] = transcript.stats_of(response)
                reply["settings"] = {k: s[k] for k in SETTINGS if k in s}  # each reply's own
                reply["call"] = response.log_id
                if response.logprobs:
                    conv.setdefault("_next", {})[str(len(conv["messages"]) - 1)] = [
                        (lp.token, lp.logprob, lp.top) for lp in response.logprobs]
        except LlmlabError as exc:
            raise fail(exc) from exc
        yield finished(conv)

    def agent_reply(conv):
        from ..tools import agent
        from ..tools.builtin import builtin_tools

        with wb.using(conv["model"]) as model:
            bot = agent(model, builtin_tools(["calculator", "dates"]), system=conv.get("system") or None,
                        config=config_from(conv["settings"]))
            run = bot.run([(m.role, m.content) for m in transcript.turns(conv) if m.role != "system"])
        for step in run.calls:
            outcome = step.result if step.error is None else f"error: {step.error}"
            conv["messages"].append({"role": "assistant", "tool": True, "title": f"🔧 {step.tool}",
                                     "content": f"`{step.arguments}` → {outcome}"})
        answer = run.answer if run.answer is not None else f"(no answer: the agent stopped: {run.stopped})"
        conv["messages"].append({"role": "assistant", "content": answer,
                                 "stats": {"finish_reason": run.stopped, "tool_calls": len(run.calls)}})
        yield finished(conv)

    def begin(conv, model, system, values) -> dict:
        conv = {**conv, "messages": list(conv["messages"]), "model": (model or wb.default_model).strip(),
                "system": system or "", "settings": settings_of(values)}
        return conv

    with gr.Tabs():
        with gr.Tab("Conversation", id="chat-conversation"):
            conv = gr.State(transcript.new(wb.default_model, {**DEFAULTS, "json": False, "tools": False}))
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=260, elem_classes="llmlab-sidebar"):
                    model = gr.Dropdown(wb.choices(), value=wb.default_model, allow_custom_value=True,
                                        label="Model", info="a bundled alias, a path, ollama/… or openai/…",
                                        elem_id="chat-model")
                    system = gr.Textbox(label="System prompt", lines=2, elem_id="chat-system")
                    with gr.Accordion("Generation settings", open=True):
                        sliders = [
                            gr.Slider(0, 2, DEFAULTS["temperature"], step=0.05, label="Temperature",
                                      info="0 = greedy", elem_id="chat-temperature"),
                            gr.Slider(0.05, 1, DEFAULTS["top_p"], step=0.01, label="Top-p",
                                      elem_id="chat-top-p"),
                            gr.Slider(0, 200, DEFAULTS["top_k"], step=1, label="Top-k", info="0 = off",
                                      elem_id="chat-top-k"),
                            gr.Slider(1, 2048, DEFAULTS["max_new_tokens"], step=1, label="Max new tokens",
                                      elem_id="chat-max-tokens"),
                            gr.Slider(0.5, 2, DEFAULTS["repeat_penalty"], step=0.05, label="Repeat penalty",
                                      info="1 = off", elem_id="chat-repeat-penalty"),
                            gr.Number(DEFAULTS["seed"], precision=0, label="Seed",
                                      info="-1 = a new one each time",
                                      elem_id="chat-seed"),
                            gr.Checkbox(False, label="JSON output", elem_id="chat-json"),
                            gr.Checkbox(False, label="Tools (calculator, dates)", elem_id="chat-tools"),
                        ]
                    with gr.Accordion("Presets", open=False):
                        preset = gr.Dropdown(list(wb.store.presets()), label="Preset",
                                             allow_custom_value=True,
                                             elem_id="chat-preset")
                        with gr.Row():
                            load_preset = gr.Button("Load", size="sm", elem_id="chat-preset-load")
                            save_preset = gr.Button("Save", size="sm", elem_id="chat-preset-save")
                    with gr.Accordion("Conversations", open=True):
                        saved = gr.Dropdown(conversation_choices(), label="Saved conversations", value=None,
                                            elem_id="chat-saved")
                        with gr.Row():
                            open_btn = gr.Button("Open", size="sm", elem_id="chat-open")
                            new_btn = gr.Button("New", size="sm", elem_id="chat-new")
                        with gr.Row():
                            export_json = gr.DownloadButton("Export JSON", size="sm",
                                                            elem_id="chat-export-json")
                            export_md = gr.DownloadButton("Export Markdown", size="sm",
                                                          elem_id="chat-export-md")
                with gr.Column(scale=3, min_width=300, elem_id="chat-main"):
                    chatbot = gr.Chatbot(editable="user", height=460, label="Chat", elem_id="chat-log",
                                         feedback_options=None, buttons=["copy", "copy_all"])
                    stats = gr.Markdown(elem_id="chat-stats", elem_classes="llmlab-stats")
                    with gr.Row():
                        msg = gr.Textbox(show_label=False, placeholder="Message (Enter sends)", scale=6,
                                         elem_id="chat-input", autofocus=True)
                        send = gr.Button("Send", variant="primary", scale=1, min_width=80,
                                         elem_id="chat-send")
                        stop = gr.Button("Stop", variant="stop", scale=1, min_width=80, elem_id="chat-stop")
                    with gr.Row():
                        speak = gr.Button("Read the last reply aloud", size="sm", elem_id="chat-speak")
                        audio = gr.Audio(label="Read aloud", interactive=False, elem_id="chat-audio")
                        mic = gr.Audio(sources=["microphone", "upload"], type="filepath",
                                       label="Speak a message (offline: PocketSphinx, English)",
                                       elem_id="chat-mic")

            turn_out = [chatbot, stats, conv, saved, export_json, export_md]

            def submit(request: gr.Request, text, conv, model, system, *values):
                if not (text or "").strip():
                    raise gr.Error("type a message first")
                conv = begin(conv, model, system, values)
                conv["messages"].append({"role": "user", "content": text})
                yield view(conv), "", conv, gr.skip(), gr.skip(), gr.skip(), ""  # the box empties at once
                for out in generate(conv, request):
                    yield (*out, gr.skip())

            gr.on([msg.submit, send.click], submit, [msg, conv, model, system, *sliders], [*turn_out, msg],
                  api_name="chat", concurrency_id="chat", show_progress="hidden")

            # gradio passes gr.Request and gr.*Data to the parameters annotated so; they come first,
            # before the inputs (a keyword-only parameter after *values would not be filled)
            def stop_reply(request: gr.Request = None):
                response = running.get(request.session_hash if request else "-")
                if response is not None:
                    response.cancel()

            # queued (so it knows the browser session) but never waiting behind the reply it stops
            stop.click(stop_reply, None, None, api_name="stop", concurrency_limit=None)

            def retry(request: gr.Request, data: gr.RetryData, conv, model, system, *values):
                conv = begin(conv, model, system, values)
                conv["messages"] = conv["messages"][:data.index + 1]
                yield view(conv), "", conv, gr.skip(), gr.skip(), gr.skip()
                yield from generate(conv, request)

            chatbot.retry(retry, [conv, model, system, *sliders], turn_out, api_name="retry",
                          concurrency_id="chat")

            def undo(data: gr.UndoData, conv):
                conv = {**conv, "messages": conv["messages"][:data.index]}
                text = data.value if isinstance(data.value, str) else ""
                return (*finished(conv), text)

            chatbot.undo(undo, [conv], [*turn_out, msg], api_name="undo")

            def edit(request: gr.Request, data: gr.EditData, conv, model, system, *values):
                conv = begin(conv, model, system, values)
                if conv["messages"][data.index]["role"] != "user":
                    raise gr.Error("only your own messages can be edited")
                conv["messages"] = conv["messages"][:data.index + 1]
                conv["messages"][data.index] = {"role": "user", "content": data.value}
                yield view(conv), "", conv, gr.skip(), gr.skip(), gr.skip()
                yield from generate(conv, request)

            chatbot.edit(edit, [conv, model, system, *sliders], turn_out, api_name="edit",
                         concurrency_id="chat")

            def open_conversation(cid):
                if cid is None:
                    raise gr.Error("choose a saved conversation first")
                c = wb.store.conversation(int(cid))
                if c is None:
                    raise gr.Error(f"conversation #{cid} is not in the store")
                s = {**DEFAULTS, **c["settings"]}
                last = next((m for m in reversed(c["messages"]) if m["role"] == "assistant"), {})
                return (view(c), transcript.stats_line(last.get("stats")), c, gr.skip(), *files(c),
                        c["model"], c["system"], *[s.get(k, False) for k in [*SETTINGS, "json", "tools"]])

            open_btn.click(open_conversation, [saved], [*turn_out, model, system, *sliders],
                           api_name="open_conversation")

            def new_conversation(model, system, *values):
                c = transcript.new((model or wb.default_model).strip(), settings_of(values), system or "")
                return [], "", c, gr.update(value=None), None, None

            new_btn.click(new_conversation, [model, system, *sliders], turn_out, api_name="new_conversation")
            chatbot.clear(new_conversation, [model, system, *sliders], turn_out, api_name=False)

            def store_preset(name, *values):
                name = (name or "").strip()
                if not name:
                    raise gr.Error("type a name for the preset")
                wb.store.save_preset(name, settings_of(values))
                gr.Info(f"preset {name!r} saved")
                return gr.update(choices=list(wb.store.presets()), value=name)

            save_preset.click(store_preset, [preset, *sliders], [preset], api_name="save_preset")

            def use_preset(name):
                presets = wb.store.presets()
                if name not in presets:
                    raise gr.Error(f"no preset named {name!r}; saved: {', '.join(presets) or 'none'}")
                s = {**DEFAULTS, "json": False, "tools": False, **presets[name]}
                return [s[k] for k in [*SETTINGS, "json", "tools"]]

            load_preset.click(use_preset, [preset], sliders, api_name="load_preset")

            def read_aloud(conv):
                from .voice import speak as say

                last = next((m for m in reversed(conv["messages"]) if m["role"] == "assistant"
                             and not m.get("tool")), None)
                if last is None or not last["content"].strip():
                    raise gr.Error("there is no reply to read yet")
                try:
                    return str(say(last["content"], exports))
                except LlmlabError as exc:
                    raise fail(exc) from exc

            speak.click(read_aloud, [conv], [audio], api_name="read_aloud")

            def hear(path):
                """What was said, into the message box to read over before sending."""
                from .voice import transcribe

                if not path:
                    return gr.skip()
                try:
                    return transcribe(path)
                except LlmlabError as exc:
                    raise fail(exc) from exc

            mic.change(hear, [mic], [msg], api_name="transcribe")

        with gr.Tab("Next token", id="chat-next-token") as tab:
            next_token.build(gr, wb, conv, tab)
        with gr.Tab("Base vs instruct", id="chat-base-instruct"):
            base_instruct.build(gr, wb)
