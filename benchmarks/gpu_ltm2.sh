#!/usr/bin/env bash
# LTM-2 on one GPU (H100/H200), in one run of about 6 minutes: the lab's fast-kernel equivalence tests (fla's delta
# rule, mamba-ssm's selective scan, each against our CPU reference; skipped, and said so, where not installed), then
# benchmarks/ltm2_gpu.py: the encoder's prefill over 100M bytes and the read-loss stage trained at scale (16 rows of
# 16K bytes a step). Copies what a CPU machine needs afterwards into OUT_DIR: the log's RESULTS.md and the trained
# run folder (config.json, model.safetensors, metrics.jsonl, summary.json) for benchmarks/ltm2_recall.py --weights.
#   bash benchmarks/gpu_ltm2.sh [OUT_DIR]     # needs torch (CUDA), numpy, safetensors, tqdm; the training corpus at
#                                             # runs/ltm2_train_corpus.bin (python -m hashhop.ltm2.data --out ...);
#                                             # wheels in .whl/ (e.g. flash-linear-attention, fla-core) installed first
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-runs/gpu_out}}
mkdir -p "$out/run"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu_site .whl/*.whl && export PYTHONPATH=/tmp/gpu_site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))" || exit 1
corpus=runs/ltm2_train_corpus.bin
[ -f "$corpus" ] || python3 -m hashhop.ltm2.data --out "$corpus" || exit 1
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/lab/test_mixers.py -k fast_kernel -rs
timeout 360 python3 benchmarks/ltm2_gpu.py --corpus "$corpus" --context 100M --train-seconds 120 --runs /tmp/gpu_runs
status=$?
cp benchmarks/RESULTS.md "$out/" 2>/dev/null
# the checkpoint only if the run was cut short
for f in config.json model.safetensors checkpoint.safetensors metrics.jsonl summary.json; do cp /tmp/gpu_runs/ltm2_gpu_reads_16384/$f "$out/run/" 2>/dev/null; done
exit $status
