#!/usr/bin/env bash
# Create .venv and install adapt into it. Safe to run again: it only installs what is missing.
#   bash scripts/setup.sh          # adapt and its dependencies
#   bash scripts/setup.sh --dev    # plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
[ -x .venv/bin/python ] || python3 -m venv .venv
# Install the CPU build of torch first: otherwise pip resolves the newest CUDA build (gigabytes).
# On a GPU machine, install your CUDA torch into .venv before running this script.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "torch==2.13.0"
fi
.venv/bin/pip install -q -c constraints.txt -e ".${extra}"
echo "adapt installed in .venv ($(.venv/bin/adapt --help >/dev/null && echo ok))"
