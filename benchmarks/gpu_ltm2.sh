#!/usr/bin/env bash
# LTM-2 on one GPU (H100/H200), in one run of at most 8 minutes: the encoder's prefill over 100M bytes and a short
# training run at scale (benchmarks/ltm2_gpu.py), then the lab's fast-kernel equivalence tests (fla's delta rule,
# mamba-ssm's selective scan against our CPU references) that need CUDA. Writes its RESULTS.md section.
#   bash benchmarks/gpu_ltm2.sh      # needs torch (CUDA build), faiss-cpu, safetensors; fla / mamba-ssm if installed
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
timeout 300 python benchmarks/ltm2_gpu.py --context 100M --train-steps 60
timeout 150 python -m pytest -q tests/lab/test_mixers.py -k "cuda or fast" -rs
