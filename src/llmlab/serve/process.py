"""Start ``llmlab serve`` (or any server command) in a subprocess and wait until it answers.

Used by the tests and by ``bench/bench_serve.py``; handy in a notebook too:

    with ServerProcess(["serve", "-m", "smollm2"]) as server:
        print(server.url)          # http://127.0.0.1:<free port>
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..errors import BackendError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``llmlab ARGS --port N`` (or ``command`` as given) on 127.0.0.1, stopped on exit."""

    def __init__(self, args: list[str] | None = None, *, command: list[str] | None = None,
                 port: int | None = None, ready_path: str = "/health", timeout: float = 120.0,
                 env: dict | None = None, log: str | Path | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = command or [sys.executable, "-m", "llmlab", *(args or []),
                                   "--host", "127.0.0.1", "--port", str(self.port)]
        self.ready_path = ready_path
        self.timeout = timeout
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.log = Path(log) if log else None
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        import httpx

        out = self.log.open("wb") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BackendError(f"the server exited with code {self.proc.returncode} before it "
                                   f"answered: {' '.join(self.command)}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.__exit__(None, None, None)
        raise BackendError(f"the server did not answer within {self.timeout:.0f} s")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
