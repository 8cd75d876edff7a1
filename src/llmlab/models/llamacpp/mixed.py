"""One ``llama_decode`` batch holding both generating sequences and prompts: the engine's
``batch_prompts`` mode (``llmlab serve --batch-prompts``).

Each step the batch gets the next token of every generating sequence first, then as many prompt
tokens of the sequences still being filled as the batch has room for, oldest request first; a
prompt longer than the room left is split and continued at the next step. Only the rows whose
logits are read ask for them: each generating sequence's, and a prompt's last token once it is in.
Reading the weights once per step for all of it is what makes this mode fast: a prompt costs the
generations beside it one slightly larger step instead of stalling them while it is evaluated alone.

What it gives up: a prompt is cut wherever the room ends, and each token is evaluated in a batch
whose size depends on what else is running, so a greedy answer can depend on the other requests
(the engine's module docstring says by how much).
"""

from __future__ import annotations


def fill(batch, generating: list, filling: list, n_batch: int) -> list[tuple[object, list[int], int]]:
    """Write the next batch into ``batch`` (a ``llama_batch``); returns one ``(seq, tokens, row)`` per
    sequence in it: the tokens it got, and the batch row of its logits (-1: none asked, its prompt
    goes on at the next step).

    A sequence has ``slot``, ``pos`` (the position of its next token), ``last`` (a generating
    sequence's next token) and ``job.tokens`` (its prompt; a filling sequence's ``pos`` is how much
    of it is in the cache). Generating sequences get their token first, then the prompts get the
    room left, oldest first; the rows are written in slot order (``slot_order`` says why).
    """
    picked = [(seq, [seq.last], True) for seq in generating]
    n = len(picked)
    for seq in filling:
        room = n_batch - n
        if room <= 0:
            break
        rest = seq.job.tokens[seq.pos:seq.pos + room]
        picked.append((seq, rest, seq.pos + len(rest) == len(seq.job.tokens)))
        n += len(rest)
    plan = []
    n = 0
    for seq, tokens, logits in slot_order(picked):
        for i, tok in enumerate(tokens):
            batch.token[n + i], batch.pos[n + i], batch.n_seq_id[n + i] = tok, seq.pos + i, 1
            batch.seq_id[n + i][0] = seq.slot
            batch.logits[n + i] = False
        if logits:
            batch.logits[n + len(tokens) - 1] = True
        n += len(tokens)
        plan.append((seq, tokens, n - 1 if logits else -1))
    batch.n_tokens = n
    return plan


def slot_order(items: list) -> list:
    """``items`` (tuples whose first element has a ``slot``) sorted by slot.

    With one KV stream per slot, llama.cpp cuts a batch into ubatches (one forward pass each, the
    weights read again) that take only sequences whose ids increase by one in the order they first
    appear in the batch (``llama_batch_allocr::split_equal``, ``sequential``). A batch in arrival
    order, say slots 3, 1, 2, 0, is four forward passes of one token each: batching bought nothing.
    In slot order it is one. Measured (bench/bench_serve.py, 50 chats, 8 slots, 2 threads): this
    mode went from 0.72x to 1.01x of llama-server. (The exact mode writes the falling order on
    purpose: engine.py.)
    """
    return sorted(items, key=lambda item: item[0].slot)
