#!/usr/bin/env bash
# Sets llmlab up in ./.venv with every feature (the README's two commands start with this).
#
# torch is pinned and installed first so that pip takes its CPU build, not a multi-GB CUDA one;
# llama-cpp-python compiles from source the first time (about 4 minutes on 2 cores). Debian's
# chromium (the web UI's browser tests) and espeak-ng (replies read aloud) come from apt when this
# runs as root on Debian; elsewhere it says what to install, and those tests skip saying why.
set -euo pipefail
cd "$(dirname "$0")"
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
