"""Load test of ``llmlab serve``: N concurrent streaming chat requests on loopback, against raw
llama-cpp-python on the same model in this process.

    python bench/bench_serve.py                       # 50 requests, 64 new tokens each, --parallel 8
    python bench/bench_serve.py --requests 20 --max-tokens 32 --parallel 4

What it checks and measures, in one run:
  1. raw: llama-cpp-python's ``Llama.create_chat_completion`` (stream, greedy), the requests one after
     another in one process (a llama.cpp context serves one request at a time), with 2 threads (as
     llmlab's backend) and with 1 (the server's default on 2 cores); the faster is the reference
  2. server, concurrent: all requests at once (httpx async client, SSE); none may fail
  3. server, alone: each request again on its own; with greedy decoding every concurrent answer
     must equal its answer alone (nothing lost or mixed up)
Aggregate tokens/s = completion tokens of all requests / wall time from the first request sent to
the last answer done; tokens per CPU-second divides by the CPU time of the process that generated
them instead (this process for raw, the server process for llmlab serve), which other work on the
machine disturbs less. Latency is per request, from sending to the last byte. Other work on the
machine makes every figure noisy: compare ratios from the same run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

TOPICS = ["the sea", "Groningen", "bicycles", "coffee", "the moon", "winter", "trains", "music", "bees",
          "volcanoes", "chess", "libraries", "rain", "bread", "mountains", "the internet", "owls",
          "gardens", "clocks", "rivers", "paper", "snow", "cats", "bridges", "stars"]
FORMS = ["Write one sentence about {}.", "Give me a short fact about {}."]


def requests_for(n: int) -> list[list[dict]]:
    prompts = [form.format(topic) for form in FORMS for topic in TOPICS]
    texts = [prompts[i % len(prompts)] + (f" ({i})" if i >= len(prompts) else "") for i in range(n)]
    return [[{"role": "user", "content": text}] for text in texts]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def run_raw(path: str, requests: list, max_tokens: int, n_ctx: int, threads: int) -> dict:
    from llama_cpp import Llama

    from llmlab.models.llamacpp.cpu import llama_params

    with llama_params():  # the same weight layout as llmlab's, which also keeps AMX CPUs alive
        llm = Llama(path, n_ctx=n_ctx, n_threads=threads, verbose=False)
    texts, tokens, latencies = [], 0, []
    start, cpu = time.perf_counter(), time.process_time()
    for messages in requests:
        t0 = time.perf_counter()
        pieces, n = [], 0
        for chunk in llm.create_chat_completion(messages, temperature=0, max_tokens=max_tokens, stream=True):
            delta = chunk["choices"][0]["delta"].get("content")
            if delta:
                pieces.append(delta)
                n += 1
        texts.append("".join(pieces))
        tokens += n
        latencies.append(time.perf_counter() - t0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    llm.close()
    return {"texts": texts, "tokens": tokens, "wall": wall, "cpu": cpu, "latencies": latencies, "ttfts": []}


async def one(client: httpx.AsyncClient, messages, max_tokens: int) -> dict:
    body = {"model": "smollm2", "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, pieces, usage = None, [], None
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices", []):
                if choice["delta"].get("content"):
                    ttft = ttft or time.perf_counter() - t0
                    pieces.append(choice["delta"]["content"])
    return {"text": "".join(pieces), "tokens": usage["completion_tokens"], "ttft": ttft,
            "latency": time.perf_counter() - t0}


async def run_server(url: str, requests: list, max_tokens: int, concurrent: bool) -> dict:
    limits = httpx.Limits(max_connections=len(requests) + 10)
    # no client timeout: on a busy machine the last of 50 queued requests may wait many minutes
    async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits) as client:
        start = time.perf_counter()
        if concurrent:
            results = await asyncio.gather(*[one(client, m, max_tokens) for m in requests],
                                           return_exceptions=True)
        else:
            results = [await one(client, m, max_tokens) for m in requests]
        wall = time.perf_counter() - start
    failed = [r for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    return {"texts": [None if isinstance(r, BaseException) else r["text"] for r in results],
            "tokens": sum(r["tokens"] for r in ok), "wall": wall, "failed": failed,
            "latencies": [r["latency"] for r in ok], "ttfts": [r["ttft"] for r in ok if r["ttft"]]}


def row(name: str, r: dict, n: int) -> str:
    lat = r["latencies"]
    ttft = f"{statistics.median(r['ttfts']):.2f}" if r["ttfts"] else "–"
    p50, p95 = percentile(lat, 50), percentile(lat, 95)
    return (f"| {name} | {n - len(r.get('failed', []))}/{n} | {r['tokens']} | {r['wall']:.1f} | "
            f"{r['tokens'] / r['wall']:.1f} | {r['tokens'] / r['cpu']:.1f} | {p50:.2f} | {p95:.2f} | "
            f"{ttft} |")


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=8, help="llmlab serve --parallel")
    ap.add_argument("--n-ctx", type=int, default=512, help="window per request")
    ap.add_argument("--threads", type=int, default=None, help="llmlab serve --threads")
    ap.add_argument("--raw-threads", type=int, default=2,
                    help="llama.cpp threads of the raw run (a 1-thread raw run is always added)")
    args = ap.parse_args()

    from llmlab.models.registry import BUNDLED
    from llmlab.serve.process import ServerProcess

    path = str(BUNDLED["smollm2"].path())
    requests = requests_for(args.requests)
    print(f"# llmlab serve load test: {args.requests} concurrent streaming chats, smollm2, greedy, "
          f"max_tokens {args.max_tokens}, --parallel {args.parallel}\n", flush=True)
    raws = {}
    for threads in sorted({args.raw_threads, 1}):
        raws[threads] = run_raw(path, requests, args.max_tokens, args.n_ctx, threads)
        print(f"raw, {threads} threads: {raws[threads]['tokens'] / raws[threads]['wall']:.1f} tok/s",
              file=sys.stderr)
    # the server is compared with the better of the raw runs
    best = max(raws, key=lambda t: raws[t]["tokens"] / raws[t]["wall"])
    raw = raws[best]
    with tempfile.TemporaryDirectory() as tmp:
        serve_args = ["--db", str(Path(tmp) / "calls.db"), "serve", "-m", "smollm2", "-q",
                      "--parallel", str(args.parallel), "--n-ctx", str(args.n_ctx),
                      "--queue-size", str(args.requests)]
        serve_args += ["--threads", str(args.threads)] if args.threads else []
        with ServerProcess(serve_args, log=Path(tmp) / "serve.log") as server:
            asyncio.run(run_server(server.url, requests[:2], 4, concurrent=False))  # warm up
            cpu = cpu_seconds(server.proc.pid)
            together = asyncio.run(run_server(server.url, requests, args.max_tokens, concurrent=True))
            together["cpu"], cpu = cpu_seconds(server.proc.pid) - cpu, cpu_seconds(server.proc.pid)
            print("concurrent run done", file=sys.stderr)
            alone = asyncio.run(run_server(server.url, requests, args.max_tokens, concurrent=False))
            alone["cpu"] = cpu_seconds(server.proc.pid) - cpu
    same_as_alone = sum(a == b for a, b in zip(together["texts"], alone["texts"], strict=True))
    same_as_raw = sum(a == b for a, b in zip(together["texts"], raw["texts"], strict=True))
    ratio = (together["tokens"] / together["wall"]) / (raw["tokens"] / raw["wall"])
    print("| run | completed | tokens | wall s | aggregate tok/s | tok per CPU-s | p50 latency s | "
          "p95 latency s | median TTFT s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for threads, r in raws.items():
        print(row(f"raw llama-cpp-python, one at a time, {threads} thread(s)", r, args.requests))
    print(row(f"llmlab serve, {args.requests} at once", together, args.requests))
    print(row("llmlab serve, one at a time", alone, args.requests))
    print()
    print(f"- aggregate throughput, llmlab serve concurrent / best raw ({best} thread(s)): **{ratio:.2f}x** "
          "(target >= 0.9)")
    cpu_ratio = (together["tokens"] / together["cpu"]) / (raw["tokens"] / raw["cpu"])
    print(f"- tokens per CPU-second (server process / raw process), less sensitive to other load: "
          f"{cpu_ratio:.2f}x")
    print(f"- concurrent answers equal to the same request alone: {same_as_alone}/{args.requests}")
    print(f"- concurrent answers equal to raw llama-cpp-python's: {same_as_raw}/{args.requests}")
    for exc in together["failed"][:5]:
        print(f"- failed: {type(exc).__name__}: {exc}")
    ok = not together["failed"] and same_as_alone == args.requests
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
