"""The chat page's next-token view: for any token of a reply, the alternatives the model weighed and
how temperature, top-k and top-p reshape them (the arithmetic is ``nexttoken.py``'s).

A reply's log-probabilities come from its generation (the chat asks for the 20 best alternatives of
every token where the model gives them); a reply reopened from the store is scored again, where the
model can score a text's own tokens (``echo``).
"""

import html

from . import transcript
from .nexttoken import reshape, shown
from .workbench import DEFAULTS

N_TOP = 20  # alternatives per token (the most a stream's log-probabilities carry)


def build(gr, wb, conv, tab) -> None:
    gr.Markdown("Pick a reply and a token in it: the table shows the alternatives the model weighed at that "
                "point, with their probabilities, and the chance each had of being drawn under the settings "
                "below (llama.cpp's order: top-k, then top-p, then temperature).")
    with gr.Row():
        reply = gr.Dropdown([], label="Reply", elem_id="next-reply", scale=3)
        refresh = gr.Button("Use this conversation", elem_id="next-refresh", scale=1)
    # the bound a reply's length sets is the browser's; the server checks against this one
    position = gr.Slider(0, 4096, 0, step=1, label="Token in the reply", elem_id="next-position")
    context = gr.HTML(elem_id="next-context")
    with gr.Row():
        temperature = gr.Slider(0, 2, DEFAULTS["temperature"], step=0.05, label="Temperature",
                                elem_id="next-temperature")
        top_k = gr.Slider(0, 200, DEFAULTS["top_k"], step=1, label="Top-k", elem_id="next-top-k")
        top_p = gr.Slider(0.05, 1, DEFAULTS["top_p"], step=0.01, label="Top-p", elem_id="next-top-p")
    table = gr.Dataframe(headers=["token", "model's probability", "kept", "chance of being drawn"],
                         interactive=False, elem_id="next-table")
    note = gr.Markdown(elem_id="next-note")

    def replies(conv):
        """The conversation's replies (the last one picked) and its settings, to start from."""
        choices = [(f"reply {n + 1}: {m['content'][:50]}", i) for n, (i, m) in enumerate(
            (i, m) for i, m in enumerate(conv["messages"]) if m["role"] == "assistant" and not m.get("tool"))]
        s = {**DEFAULTS, **conv.get("settings", {})}
        return (gr.update(choices=choices, value=choices[-1][1] if choices else None),
                s["temperature"], s["top_k"], s["top_p"])

    outputs = [reply, temperature, top_k, top_p]
    refresh.click(replies, [conv], outputs, api_name="next_token_replies")
    tab.select(replies, [conv], outputs, api_name=False)

    def steps_of(conv, index):
        """The reply's tokens with their alternatives: kept from generation, else scored again."""
        cached = conv.get("_next", {}).get(str(index))
        if cached:
            return cached
        with wb.using(conv["model"]) as model:
            if not model.can("echo"):
                raise gr.Error(f"{conv['model']} cannot score a reply after the fact; send a new message "
                               "to see its next-token alternatives")
            head = {**conv, "messages": conv["messages"][:index]}
            prompt, _ = transcript.as_prompt(model, head)
            prefix = model.prompt_text(prompt)
            lps = model.prompt_logprobs(prefix + conv["messages"][index]["content"], n_top=N_TOP)
            n = len(model.prompt_logprobs(prefix)) if prefix else 0
        steps = [(lp.token, lp.logprob, lp.top) for lp in lps[n:]]
        conv.setdefault("_next", {})[str(index)] = steps
        return steps

    def pick(conv, index):
        if index is None:
            return gr.update(maximum=1, value=0)
        steps = steps_of(conv, int(index))
        return gr.update(maximum=max(len(steps) - 1, 1), value=0)

    reply.change(pick, [conv, reply], [position], api_name=False)

    def show(conv, index, pos, t, k, p):
        if index is None:
            return "", None, ""
        steps = steps_of(conv, int(index))
        if not steps:
            return "", None, "This reply has no tokens."
        pos = min(int(pos or 0), len(steps) - 1)
        before = "".join(s[0] for s in steps[max(0, pos - 12):pos])
        token, _, top = steps[pos]
        mark = f"<mark><b>[{html.escape(shown(token))}]</b></mark>"
        ctx = f'<span style="white-space: pre-wrap">…{html.escape(before)}{mark}</span>'
        if not top:
            return ctx, None, "No alternatives were recorded for this token."
        step = reshape([tuple(x) for x in top], float(t), int(k), float(p))
        rows = [[shown(o.token), round(o.p, 4), "yes" if o.kept else "no", round(o.p_sampled, 4)]
                for o in step.options]
        words = (f"The {len(top)} alternatives shown hold {step.shown_mass:.1%} of the model's probability "
                 f"here. The token written was `{shown(token)}`.")
        if not step.exact:
            words += (" These settings keep tokens beyond the ones shown, so the chances of being drawn are "
                      "renormalised over the shown ones and are an upper bound.")
        return ctx, rows, words

    for trigger in (position.change, temperature.change, top_k.change, top_p.change, reply.change):
        trigger(show, [conv, reply, position, temperature, top_k, top_p], [context, table, note],
                api_name=False)
    gr.Button("Show", elem_id="next-show").click(
        show, [conv, reply, position, temperature, top_k, top_p], [context, table, note],
        api_name="next_token")
