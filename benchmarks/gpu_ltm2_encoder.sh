#!/usr/bin/env bash
# LTM-2's encoder width on one GPU (H100/H200), in one run of at most ~8 minutes: the whole training command (stage 1,
# then the read stage; the shipped recipe, `python -m hashhop.ltm2.train`) at several encoder widths side by side, so
# that keys see more than the last 15 bytes (width 8: a 16-character hash's last byte does not see what stands before
# the hash, `= ` or a line's start). Width 8 is the control, trained on the same GPU. The weights come back to OUT_DIR
# for the CPU's HashHop benchmarks (`benchmarks/ltm2_recall.py --weights OUT_DIR/ltm2_kK_sS.safetensors`); a run cut
# short by the time limit comes back as its run folder (checkpoint.safetensors: rerun the same command to resume it).
#   bash benchmarks/gpu_ltm2_encoder.sh [OUT_DIR]    # RUNS="8:0 12:0 16:0 16:1" (width:seed), BUDGET_S=450
# A run may add training flags, comma-separated: RUNS="8:0 8:0:--needle-reads,--needle-far-keys=0.7" (its files are
# named after them). Compare recipes over two or more seeds each: one seed moves a run more than most recipes do.
# Needs torch (CUDA), numpy, safetensors, tqdm, and the training corpus at runs/ltm2_train_corpus.bin
# (python -m hashhop.ltm2.data --out runs/ltm2_train_corpus.bin; built here if missing, needs sympy's sources).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-runs/gpu_encoder}}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))" || exit 1
corpus=runs/ltm2_train_corpus.bin
[ -f "$corpus" ] || python3 -m hashhop.ltm2.data --out "$corpus" || exit 1
runs=${RUNS:-8:0 12:0 16:0 16:1}
started=$(date +%s)
run_name() {  # width:seed[:flags] -> kW_sS[_flags], in letters, digits, '.', '_' and '-' (names that come back)
  local width seed flags
  IFS=: read -r width seed flags <<<"$1"
  echo "k${width}_s$seed${flags:+_$(printf %s "$flags" | tr -c 'A-Za-z0-9.-' '_')}"
}
for run in $runs; do
  IFS=: read -r width seed flags <<<"$run"
  name=$(run_name "$run")
  # shellcheck disable=SC2086  # the flags split on purpose
  timeout "${BUDGET_S:-450}" python3 -m hashhop.ltm2.train --conv-kernel "$width" --seed "$seed" ${flags//,/ } --corpus "$corpus" --threads 3 \
    --runs "/tmp/gpu_encoder/$name" --out "$out/ltm2_$name.safetensors" --no-progress >"$out/$name.log" 2>&1 &
done
wait
echo "all runs ended after $(($(date +%s) - started)) s"
for run in $runs; do
  name=$(run_name "$run")
  tail -n 3 "$out/$name.log"
  # a run cut short: its folder (checkpoints) to resume elsewhere; a finished one: its card and log go with the weights
  [ -f "$out/ltm2_$name.safetensors" ] || tar -C /tmp/gpu_encoder -cf "$out/partial_$name.tar" "$name"
done
tar -C "$out" -czf "$out/cards_logs.tgz" $(cd "$out" && ls ./*.card.md ./*.log 2>/dev/null) && rm -f "$out"/*.card.md "$out"/*.log
ls -la "$out"
