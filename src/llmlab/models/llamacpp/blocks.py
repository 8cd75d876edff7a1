"""Where the engine's exact mode cuts a prompt: blocks that start at fixed positions.

Prompts are evaluated in blocks that start at fixed positions (16, 32, 64, ... doubling up to the
batch size, then every batch size), and only whole blocks of a cached prefix are kept, so a token's
cache cells are computed from the same batch whether its prompt comes cold or after another that
shares its start. Reusing an arbitrary prefix length did not keep that: 12 of 60 greedy answers to
the sentiment task's prompts (one instruction, then a review) changed once the instruction came from
the cache.

What it gives up: a cached prefix that ends between two boundaries is evaluated again from the last
one (SmolLM2's ~20-token system prompt reuses only its first 16 tokens), about 9% of served
throughput on 50 concurrent chats; ``llmlab serve --batch-prompts`` reuses any length instead.
"""

from __future__ import annotations

FIRST_BLOCK = 16


def boundaries(n_batch: int):
    """Where prompt blocks start, the same for every prompt: 16, 32, 64, ... doubling up to the batch
    size, then every batch size (fine where prompts share short starts, coarse where they are long)."""
    b = min(FIRST_BLOCK, n_batch)
    while b < n_batch:
        yield b
        b *= 2
    while True:
        yield b
        b += n_batch


def block_start(n: int, n_batch: int) -> int:
    """The last block boundary at or before position ``n`` (0 when none)."""
    start = 0
    for b in boundaries(n_batch):
        if b > n:
            return start
        start = b


def blocks(start: int, end: int, n_batch: int):
    """The (start, end) blocks evaluating positions ``start..end`` (``start`` on a boundary)."""
    for b in boundaries(n_batch):
        if b <= start:
            continue
        yield start, min(b, end)
        if b >= end:
            return
        start = b


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
