"""A conversation as token ids and labels, with the loss on the assistant's own tokens only.

The mask is read off the model's own chat template rather than from generation markers in it
(SmolLM2's template, like most, has none for trl's ``assistant_only_loss``): for each trained
assistant turn the conversation is rendered up to that turn with the generation prompt (what the
model sees when it is asked to answer) and again including the turn; what the second adds to the
first is the answer. The prompt's tokens get label -100, the answer's tokens keep their ids up to
and including the first control token after the text (``<|im_end|>``: the model learns to stop),
and any markup after that (the newline between turns) is -100 again.

The first prompt is tokenized by ``Model.prompt_ids``, the very ids ``llmlab eval`` and ``prompt``
send, so for a one-turn conversation training and use see the same prompt token for token. Later
pieces are tokenized on their own, where a tokenizer merging across a turn boundary could differ
by a token from a whole rendering. A model without a chat template (a base model) gets the plain
text ``tasks.prompts.plain_text`` writes, each answer after ``Answer:``, and the end-of-sequence
token after it.

What it gives up: an answer that spells a control token (``<|im_end|>``) has it read as one.
"""

from __future__ import annotations

from ..chat import Message, render_template
from ..errors import DataError
from ..tasks.prompts import plain_text

IGNORE = -100  # the label torch's cross-entropy skips


def encode(model, messages: tuple[Message, ...] | list[Message], *, last_only: bool = False,
           where: str = "a conversation") -> tuple[list[int], list[int]]:
    """(input ids, labels) for one conversation on a loaded ``hf/`` model."""
    msgs = list(messages)
    turns = [i for i, m in enumerate(msgs) if m.role == "assistant"]
    if last_only:
        turns = turns[-1:]
    if not turns:
        raise DataError(f"{where} has no assistant turn: nothing to train on")
    ids: list[int] = []
    labels: list[int] = []
    done = ""  # the text already turned into ids
    for k in turns:
        prompt, full = _renderings(model, msgs, k)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise DataError(f"{where}: the model's chat template does not write turn {k + 1} after the "
                            "earlier ones, so its answer cannot be told apart from the prompt")
        if not ids:
            head = model.prompt_ids(msgs[:k]) if model.chats else model.encode(prompt)
        else:
            head = model.token_ids(prompt[len(done):], special=True)
        answer = model.token_ids(full[len(prompt):], special=True)
        if not model.chats and _eos(model) is not None:
            answer.append(_eos(model))
        ids += head + answer
        labels += [IGNORE] * len(head) + _answer_labels(model, answer)
        done = full
    return ids, labels


def _renderings(model, msgs: list[Message], k: int) -> tuple[str, str]:
    """The text up to assistant turn ``k`` with the generation prompt, and the text including it."""
    if not model.chats:
        prompt = plain_text(msgs[:k])
        return prompt, f"{prompt} {msgs[k].content}"
    info = model.info
    prompt = render_template(info.chat_template, msgs[:k], bos=info.bos_token, eos=info.eos_token)
    full = render_template(info.chat_template, msgs[: k + 1], bos=info.bos_token, eos=info.eos_token,
                           add_generation_prompt=False)
    return prompt, full


def _answer_labels(model, answer: list[int]) -> list[int]:
    """The answer's ids up to and including its first control token; -100 for what follows."""
    out = []
    ended = False
    for tok in answer:
        out.append(IGNORE if ended else tok)
        if not ended and out and model.is_hidden(tok):
            ended = True
    return out


def _eos(model) -> int | None:
    return model.tokenizer.eos_token_id


def check_lengths(model, encoded: list[tuple[str, list[int]]], max_length: int) -> None:
    """A one-line DataError for the first conversation longer than ``max_length`` tokens."""
    for where, ids in encoded:
        if len(ids) > max_length:
            context = model.info.context_length
            hint = (f"raise --max-length (this model's context is {context})" if max_length < context
                    else "shorten it; it is beyond the model's context")
            raise DataError(f"{where} is {len(ids)} tokens, longer than --max-length {max_length}: {hint}")
