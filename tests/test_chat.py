"""Messages, chat templates and history: units with a fake, then the real model."""

import pytest

from llmlab import Chat, Message
from llmlab.chat import as_messages, drop_oldest_turns, render_template
from llmlab.errors import ContextOverflowError, PromptError

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_messages_from_tuples_and_dicts():
    msgs = as_messages([("system", "be brief"), {"role": "user", "content": "hi"}])
    assert msgs == [Message("system", "be brief"), Message("user", "hi")]
    with pytest.raises(PromptError, match="role"):
        Message("robot", "beep")
    with pytest.raises(PromptError):
        as_messages([{"content": "no role"}])


def test_render_template_ends_with_the_assistant_cue():
    text = render_template(CHATML, [Message("user", "hi")])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(PromptError, match="no chat template"):
        render_template(None, [Message("user", "hi")])


def test_template_raise_exception_becomes_a_prompt_error():
    tpl = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}x"
    with pytest.raises(PromptError, match="no system role"):
        render_template(tpl, [Message("system", "s"), Message("user", "u")])


def test_drop_oldest_keeps_system_and_last_user_message():
    msgs = [Message("system", "S")] + [Message(r, f"{r}{i}") for i in range(3) for r in ("user", "assistant")]
    msgs.append(Message("user", "last"))
    kept, dropped = drop_oldest_turns(msgs, lambda m: len(m) <= 4)
    assert kept[0] == Message("system", "S") and kept[-1] == Message("user", "last")
    assert dropped == 4 and len(kept) == 4
    assert [m.role for m in kept[1:]] == ["user", "assistant", "user"]


def test_chat_keeps_history_across_turns(smollm2):
    chat = Chat(smollm2, system="You are a helpful assistant. Answer in one sentence.")
    first = chat.send("Where is Groningen located?", temperature=0, max_new_tokens=40)
    assert first.text.strip()
    second = chat.send("What country is that in?", temperature=0, max_new_tokens=40)
    assert [m.role for m in chat.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert chat.messages[2].content == first.text
    # the second call saw the whole history, so its prompt is longer than the first exchange
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens
    chat.reset()
    assert [m.role for m in chat.messages] == ["system"]


def test_chat_overflow_drops_oldest_turns_or_fails(smollm2):
    from llmlab import load_model

    small = load_model("smollm2", log=False, n_ctx=256)  # llama.cpp's smallest window
    try:
        long_turn = "Tell me about the history of the city of Groningen. " * 6
        chat = Chat(small, system="Be brief.", overflow="drop_oldest")
        for _ in range(4):
            chat.send(long_turn, temperature=0, max_new_tokens=40)
        assert chat.dropped > 0
        assert chat.messages[0] == Message("system", "Be brief.")
        assert small.count_tokens(chat.messages[:-1]) + 40 <= small.info.context_length

        strict = Chat(small, system="Be brief.", overflow="error")
        with pytest.raises(ContextOverflowError, match="context window of 256"):
            for _ in range(4):
                strict.send(long_turn, temperature=0, max_new_tokens=40)
        # nothing half-done is recorded: the history ends with a complete exchange
        assert strict.messages[-1].role == "assistant"
    finally:
        small.close()


def test_set_system_replaces_or_removes():
    class FakeModel:  # unit level: Chat's bookkeeping needs no model
        pass

    chat = Chat(FakeModel(), system="one")
    chat.set_system("two")
    assert chat.system == "two" and len(chat.messages) == 1
    chat.set_system(None)
    assert chat.system is None and chat.messages == []
