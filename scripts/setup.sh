#!/usr/bin/env bash
# Install impasto and everything it needs (CPU PyTorch first, so pip never pulls the CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[all,test]"
echo "impasto installed: $(command -v impasto)"
