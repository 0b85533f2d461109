#!/usr/bin/env bash
# The LTM at 100M tokens on one GPU (H100/H200), in one run of at most 8 minutes: prefill's encoder on
# CUDA, reads on the host. Writes its section of benchmarks/RESULTS.md (device named there) and prints it.
#   bash benchmarks/gpu_100m.sh            # needs a Python with torch (CUDA build), numpy, tiktoken, safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
timeout 470 python benchmarks/ltm_scale.py --lengths 1M,100M --queries 100 --dense-up-to 0 --device cuda --section ltm_scale_gpu
