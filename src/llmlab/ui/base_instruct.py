"""The chat page's base-vs-instruct view: one prompt, a base model continuing it and an instruct
model answering it, side by side with the same settings (the course's first lesson)."""

from ..errors import LlmlabError


def build(gr, wb) -> None:
    gr.Markdown("The course's first lesson: a **base** model continues text; an **instruct** model, trained "
                "further on conversations, answers it. Same prompt, same settings, side by side.")
    prompt = gr.Textbox(label="Prompt", value="Where is Groningen located?", elem_id="bi-prompt")
    with gr.Row():
        base_name = gr.Dropdown(wb.choices(), value="gemma3-270m", allow_custom_value=True,
                                label="Base model",
                                elem_id="bi-base-model")
        inst_name = gr.Dropdown(wb.choices(), value=wb.default_model, allow_custom_value=True,
                                label="Instruct model", elem_id="bi-instruct-model")
        max_tokens = gr.Slider(1, 512, 64, step=1, label="Max new tokens", elem_id="bi-max-tokens")
        temperature = gr.Slider(0, 2, 0, step=0.05, label="Temperature", elem_id="bi-temperature")
    go = gr.Button("Run both", variant="primary", elem_id="bi-run")
    with gr.Row():
        base_out = gr.Textbox(label="Base model: continues the text", lines=8, elem_id="bi-base")
        inst_out = gr.Textbox(label="Instruct model: answers", lines=8, elem_id="bi-instruct")

    def run(text, base, inst, n, t):
        from ..config import GenerationConfig

        if not (text or "").strip():
            raise gr.Error("type a prompt first")
        config = GenerationConfig(max_new_tokens=int(n), temperature=float(t), seed=0)
        outs = ["", ""]
        try:
            for side, name in enumerate((base, inst)):
                with wb.using(name) as model:
                    # the base model gets the raw text; a chat model gets it as a user turn
                    asked = [("user", text)] if model.chats else text
                    for piece in model.prompt(asked, config):
                        outs[side] += piece
                        yield outs[0], outs[1]
        except LlmlabError as exc:
            raise gr.Error(str(exc).splitlines()[0]) from exc
        yield outs[0], outs[1]

    go.click(run, [prompt, base_name, inst_name, max_tokens, temperature], [base_out, inst_out],
             api_name="base_vs_instruct")
