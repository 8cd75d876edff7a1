"""Running a generated completion against its HumanEval test: a child Python, a timeout, no network.

    >>> problem = {"prompt": "def add(a, b):\\n", "test": "def check(f):\\n    assert f(2, 3) == 5\\n",
    ...            "entry_point": "add"}
    >>> run_program(program(problem, "    return a + b\\n"), timeout=5)["status"]
    'passed'

The program -- the problem's prompt, the completion, the test and ``check(ENTRY_POINT)`` -- is written
to a fresh temporary folder and run there by ``python -I`` (isolated: no user site, no PYTHON*
variables, the script's folder not on the path) in a new session, with a bare environment whose
proxies point nowhere. Before the program runs, a wrapper sets resource limits (CPU seconds, 2 GiB
of address space, 16 MiB files, no core dumps) and replaces ``socket``'s constructors with a function
that raises ``OSError``, so a test that opens a connection fails. Past the timeout the whole process
group is killed. A chat model's answer in a fenced code block is taken from the block; when it
defines the entry point itself, it follows the prompt (whose docstring-only function it replaces).

What it gives up: this is not a security sandbox. Blocking ``socket`` in-process stops ordinary
network use, not code that is written to get around it (ctypes, a subprocess); run untrusted models'
code in a container or VM without a network.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

MEMORY = 2 << 30
FILE_SIZE = 16 << 20
_FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)

WRAPPER = """\
import resource, sys
seconds = int(sys.argv[2])
for limit, value in ((resource.RLIMIT_CPU, seconds), (resource.RLIMIT_AS, MEMORY),
                     (resource.RLIMIT_FSIZE, FILE_SIZE), (resource.RLIMIT_CORE, 0)):
    try:
        resource.setrlimit(limit, (value, value))
    except (ValueError, OSError):
        pass
import socket, _socket
def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in llmlab's code runner")
for module in (socket, _socket):
    for name in ("socket", "socketpair", "fromfd", "create_connection", "create_server",
                 "getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        if hasattr(module, name):
            setattr(module, name, _no_network)
path = sys.argv[1]
sys.argv = [path]
with open(path, encoding="utf-8") as f:
    code = compile(f.read(), path, "exec")
exec(code, {"__name__": "__main__", "__file__": path})
""".replace("MEMORY", str(MEMORY)).replace("FILE_SIZE", str(FILE_SIZE))


def completion_code(prompt: str, completion: str, entry_point: str) -> str:
    """The prompt and completion as one program: a fenced block is taken out of a chat answer; code
    that defines the entry point itself comes after the prompt rather than inside its function."""
    fenced = _FENCE.search(completion)
    code = fenced.group(1) if fenced else completion
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return prompt.rstrip() + "\n    pass\n\n" + code.strip("\n") + "\n"
    return prompt + code


def program(problem: dict, completion: str) -> str:
    """The whole program that decides one sample: prompt + completion, test, ``check(entry_point)``."""
    code = completion_code(problem["prompt"], completion, problem["entry_point"])
    return f"{code}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def run_program(source: str, timeout: float = 5.0) -> dict:
    """Run ``source`` in a child Python; ``{"status": passed|failed|timed out, "error": last line}``."""
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           **{k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                                                "all_proxy", "ALL_PROXY")}, "no_proxy": ""}
    with tempfile.TemporaryDirectory(prefix="llmlab-exec-") as folder:
        path = Path(folder) / "program.py"
        path.write_text(source, encoding="utf-8")
        seconds = max(1, int(timeout + 0.999))
        proc = subprocess.Popen([sys.executable, "-I", "-c", WRAPPER, str(path), str(seconds)], cwd=folder,
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, text=True, errors="replace")
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return {"status": "timed out", "error": f"no result within {timeout:g} s"}
    if proc.returncode == 0:
        return {"status": "passed", "error": None}
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    error = lines[-1].strip() if lines else f"exit status {proc.returncode}"
    if proc.returncode == -signal.SIGXCPU or "SIGXCPU" in error:
        return {"status": "timed out", "error": "CPU time limit"}
    return {"status": "failed", "error": error[:300]}


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the program's own children too
    except ProcessLookupError:
        pass
    proc.communicate()
