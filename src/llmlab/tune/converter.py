"""llama.cpp's own GGUF converters, fetched once for the installed llama-cpp-python.

``convert_hf_to_gguf.py`` and ``convert_lora_to_gguf.py`` (with the ``conversion`` package and the
``gguf-py`` they import) are not in the llama-cpp-python wheel, only in its source distribution on
PyPI. ``fetch()`` downloads the sdist of exactly the installed version with pip and keeps those files
(about 4 MB of the 76 MB archive) in ``<venv>/share/llmlab/llama.cpp-<version>/``, so the converter
writes the GGUF format the installed llama.cpp reads; ``find()`` returns that folder or fails in one
line naming the fetch command. ``setup.sh`` runs the fetch once:

    python -m llmlab.tune.converter            # fetch (quick when already there); prints the folder
    python -m llmlab.tune.converter --sdist F  # from an sdist already downloaded (offline)

Why inside the environment and not llmlab's data directory: the converter belongs to one llama.cpp
version, and the environment is where that version is installed (a new environment fetches its own;
deleting it deletes the converter); ``$LLMLAB_HOME`` is per user and per test, so setup could not fill
it once for the tests. Where the environment is read-only, the user's cache directory is used.
``$LLMLAB_LLAMA_CPP`` points at a llama.cpp checkout instead.

The scripts run as subprocesses of this Python (``export.py``); each puts its sibling ``gguf-py`` on
``sys.path`` itself. Their requirements (torch, transformers, safetensors, sentencepiece, numpy,
pyyaml, requests, tqdm) come with the ``tune`` extra.

What it gives up: the first fetch needs PyPI (or ``--sdist``); the scripts are run as they are, so a
transformers newer than llama.cpp pins (4.57) is trusted to keep working, as it does for SmolLM2.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from ..errors import MissingDependencyError

SCRIPTS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py")
KEEP = (*SCRIPTS, "conversion/", "gguf-py/gguf/", "requirements/", "LICENSE")  # under vendor/llama.cpp/
FETCH = "python -m llmlab.tune.converter"


class ConverterMissingError(MissingDependencyError):
    """llama.cpp's converter is not fetched (or cannot be); the message names the command."""

    def __init__(self, message: str):
        Exception.__init__(self, message)
        self.package = "llama.cpp converter"


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError as exc:
        raise MissingDependencyError("llama-cpp-python", "all") from exc


def _roots(version: str) -> list[Path]:
    """Where the converter may be, in the order looked at (and the first writable one is filled)."""
    from platformdirs import user_cache_dir

    name = f"llama.cpp-{version}"
    return [Path(sys.prefix) / "share" / "llmlab" / name,
            Path(user_cache_dir("llmlab", appauthor=False)) / name]


def _complete(root: Path) -> bool:
    return all((root / s).is_file() for s in (*SCRIPTS, "conversion/__init__.py", "gguf-py/gguf/__init__.py"))


def find() -> Path:
    """The folder holding llama.cpp's converter scripts for the installed llama-cpp-python."""
    if env := os.environ.get("LLMLAB_LLAMA_CPP"):
        root = Path(env).expanduser()
        if not _complete(root):
            raise ConverterMissingError(f"$LLMLAB_LLAMA_CPP={env} is not a llama.cpp checkout with "
                                        f"{' and '.join(SCRIPTS)} and gguf-py/")
        return root
    version = llama_cpp_version()
    for root in _roots(version):
        if _complete(root):
            return root
    raise ConverterMissingError(f"llama.cpp's GGUF converter for llama-cpp-python {version} is not fetched; "
                                f"run once: {FETCH}")


def fetch(sdist: str | Path | None = None, force: bool = False) -> Path:
    """Find the converter, or fetch it: the installed version's sdist from PyPI with pip (or ``sdist``,
    a file already downloaded), of which only the converter's files are kept."""
    if not force:
        try:
            return find()
        except ConverterMissingError:
            pass
    version = llama_cpp_version()
    target = _writable(_roots(version))
    with tempfile.TemporaryDirectory(prefix="llmlab-sdist-") as tmp:
        archive = Path(sdist).expanduser() if sdist else _download(version, Path(tmp))
        if not archive.is_file():
            raise ConverterMissingError(f"sdist not found: {archive}")
        part = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            _extract(archive, part)
            if not _complete(part):
                raise ConverterMissingError(f"{archive.name} has no vendor/llama.cpp/{SCRIPTS[1]}: is it "
                                            f"llama-cpp-python {version}'s sdist?")
            part.chmod(0o755)  # mkdtemp's folder is the owner's only
            shutil.rmtree(target, ignore_errors=True)
            part.rename(target)  # whole or not at all: find() never sees a half-extracted folder
        finally:
            shutil.rmtree(part, ignore_errors=True)
    return target


def _writable(roots: list[Path]) -> Path:
    for root in roots:
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            if os.access(root.parent, os.W_OK):
                return root
        except OSError:
            continue
    raise ConverterMissingError(f"nowhere to keep llama.cpp's converter: {' and '.join(map(str, roots))} "
                                "are read-only; set $LLMLAB_LLAMA_CPP to a llama.cpp checkout")


def _download(version: str, where: Path) -> Path:
    if importlib.util.find_spec("pip") is None:
        raise ConverterMissingError("pip is not in this environment, so llama.cpp's converter cannot be "
                                    f"fetched; download llama-cpp-python-{version}.tar.gz and run: "
                                    f"{FETCH} --sdist FILE")
    cmd = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-binary", ":all:",
           "--no-deps", "--quiet", "-d", str(where)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(where.glob("llama_cpp_python-*.tar.gz"))
    if done.returncode != 0 or not found:
        lines = [x for x in (done.stderr + done.stdout).splitlines() if x.strip()]
        why = lines[-1].strip() if lines else f"exit code {done.returncode}"
        raise ConverterMissingError(f"pip could not download llama-cpp-python {version}'s sdist ({why}); "
                                    f"with a copy of it, run: {FETCH} --sdist FILE")
    return found[0]


def _extract(archive: Path, dest: Path) -> None:
    """The converter's regular files only, each written under ``dest`` by its own path (nothing else in
    the archive is trusted: no links, no absolute or parent paths)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) < 4 or parts[1:3] != ("vendor", "llama.cpp"):
                    continue
                rel = PurePosixPath(*parts[3:])
                if ".." in rel.parts or not any(str(rel) == k or str(rel).startswith(k) for k in KEEP):
                    continue
                out = dest.joinpath(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(out, "wb") as f:
                    shutil.copyfileobj(src, f)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConverterMissingError(f"{archive} cannot be read as an sdist: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=FETCH, description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", help="llama-cpp-python's sdist (.tar.gz), already downloaded")
    parser.add_argument("--force", action="store_true", help="fetch again even if present")
    args = parser.parse_args(argv)
    try:
        print(fetch(args.sdist, force=args.force))
    except MissingDependencyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
