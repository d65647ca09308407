#!/usr/bin/env bash
# Everything FreqAdvSegment and its tests need, into .venv (CPU torch unless FREQADV_TORCH says
# otherwise), plus Debian's Chromium for the web viewer's browser test (as root, when apt exists).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build; on a GPU machine set FREQADV_TORCH to the torch you want (e.g. "torch>=2.8").
.venv/bin/python -m pip install -q "${FREQADV_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[test,slicer,web]"
# The [nnunet] extra, without its dependencies: the UNets FreqAdvSegment builds need only torch
# and numpy, while its timm requirement (for ViT models) would pull torchvision and a CUDA torch.
.venv/bin/python -m pip install -q --no-deps "dynamic-network-architectures==0.4.4"
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null; then
  apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null
fi
