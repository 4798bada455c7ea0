#!/usr/bin/env bash
# Install impasto and everything it needs (CPU PyTorch first, so pip never pulls the CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[all,test]"
echo "impasto installed: $(command -v impasto)"
# onnxruntime-web for the web page's "in my browser" mode (pinned, sha512-checked, cached in ~/.cache/impasto; the
# browser test of that mode is skipped without it, e.g. on a machine with no network)
python3 -m impasto web-assets || echo "warning: could not fetch onnxruntime-web; the in-browser test will be skipped"
