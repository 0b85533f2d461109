#!/usr/bin/env bash
# Every row of the LTM-2 issue's numbers table for one weights file, one command after another, each writing its own
# benchmarks/RESULTS.md section named <row>_<TAG>: what shipping new weights must re-measure ("same weights for all").
# A row whose section already exists is skipped, so a stopped run resumes where it was. About 4 hours on 2 cores
# (the three 100M HashHop rows ~23 min each, the 100M decode ~30, the signatures over the whole held-out corpus ~40),
# plus ~1 hour for the beam-search rows (beam_*: greedy decoding and a 4-wide beam search at every length penalty, one
# prefill; 10M over prompt seeds 0-7).
#
# Usage: bash benchmarks/ltm2_issue_rows.sh WEIGHTS TAG [ROW ...]
#   ROW: recall_1m recall_1m_s1 recall_10m recall_10m_s1 recall_10m_1hop recall_100m_1hop recall_100m_2cot
#        recall_100m_3cot every_task shapes other 4letters code signatures decode_1m decode_100m beam_1m beam_10m
#        beam_100m (default: all)
# Run it in the project's environment (. .venv/bin/activate). Progress and each row's time: runs/evals/issue_rows_<TAG>.log
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash benchmarks/ltm2_issue_rows.sh WEIGHTS TAG [ROW ...]" >&2
    exit 2
fi
weights=$1 tag=$2
shift 2
if [ ! -f "$weights" ]; then
    echo "ltm2_issue_rows.sh: no weights file at $weights" >&2
    exit 2
fi
if [[ ! $tag =~ ^[a-z0-9]+$ ]]; then
    echo "ltm2_issue_rows.sh: TAG must be lower-case letters and digits (it ends section names), got '$tag'" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
if ! python -c "import hashhop.ltm2.engine" 2>/dev/null; then
    echo "ltm2_issue_rows.sh: this python cannot import hashhop's LTM-2 engine: run it in the project's environment (. .venv/bin/activate)" >&2
    exit 2
fi
mkdir -p runs/evals
log=runs/evals/issue_rows_$tag.log
hashhop_row() {  # section, then ltm2_recall.py's options
    local section=$1
    shift
    row "$section" python benchmarks/ltm2_recall.py --weights "$weights" "$@" --section "$section" --failures "runs/evals/$section.jsonl"
}
beam_row() {  # section, then ltm2_beam_alpha.py's options: 2 / 3 hops CoT, greedy and a 4-wide beam at a = 0, 1, 2
    local section=$1
    shift
    row "$section" python benchmarks/ltm2_beam_alpha.py --weights "$weights" "$@" --tasks 2cot,3cot --beams 4 --alphas 0,1,2 \
        --out "runs/evals/$section.jsonl" --section "$section"
}
row() {  # section, then the command that writes it
    local section=$1
    shift
    if grep -q "<!-- $section:begin -->" benchmarks/RESULTS.md; then
        echo "$(date +%H:%M:%S) $section: already in RESULTS.md, skipped" | tee -a "$log"
        return
    fi
    echo "$(date +%H:%M:%S) $section: $*" | tee -a "$log"
    local started=$SECONDS
    "$@"
    echo "$(date +%H:%M:%S) $section: done in $((SECONDS - started)) s" | tee -a "$log"
}
all=(recall_1m recall_1m_s1 recall_10m recall_10m_s1 recall_10m_1hop recall_100m_1hop recall_100m_2cot recall_100m_3cot every_task shapes other 4letters code signatures decode_1m decode_100m beam_1m beam_10m beam_100m)
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=("${all[@]}")
for name in "${wanted[@]}"; do  # every name checked before any row runs
    if [[ ! " ${all[*]} " == *" $name "* ]]; then
        echo "ltm2_issue_rows.sh: no row '$name'; the rows: ${all[*]}" >&2
        exit 2
    fi
done
only_hashhop=(--lengths= --skip shapes,ruler,formats --variants trained)
for name in "${wanted[@]}"; do
    case $name in
        recall_1m) hashhop_row "ltm2_recall_1m_30q_$tag" "${only_hashhop[@]}" --long-lengths 1M --long-tasks 1,2cot,3cot --queries 30 --seed 0 ;;
        recall_1m_s1) hashhop_row "ltm2_recall_1m_30q_s1_$tag" "${only_hashhop[@]}" --long-lengths 1M --long-tasks 2cot,3cot --queries 30 --seed 1 ;;
        recall_10m) hashhop_row "ltm2_recall_10m_30q_$tag" "${only_hashhop[@]}" --long-lengths 10M --long-tasks 2cot,3cot --queries 30 --seed 0 ;;
        recall_10m_s1) hashhop_row "ltm2_recall_10m_30q_s1_$tag" "${only_hashhop[@]}" --long-lengths 10M --long-tasks 2cot,3cot --queries 30 --seed 1 ;;
        recall_10m_1hop) hashhop_row "ltm2_recall_10m_30q_1hop_$tag" --lengths= --skip shapes,ruler,formats --variants 'trained,memory off' --long-lengths 10M --long-tasks 1 --queries 30 --seed 0 ;;
        recall_100m_1hop) hashhop_row "ltm2_recall_100m_10q_1hop_$tag" "${only_hashhop[@]}" --long-lengths 100M --long-tasks 1 --queries 10 --seed 0 ;;
        recall_100m_2cot) hashhop_row "ltm2_recall_100m_10q_$tag" "${only_hashhop[@]}" --long-lengths 100M --long-tasks 2cot --queries 10 --seed 0 ;;
        recall_100m_3cot) hashhop_row "ltm2_recall_100m_10q_3cot_$tag" "${only_hashhop[@]}" --long-lengths 100M --long-tasks 3cot --queries 10 --seed 0 ;;
        every_task) hashhop_row "ltm2_recall_every_task_$tag" --lengths 10k,100k --long-lengths= --queries 10 --seed 0 --skip shapes,ruler,formats --variants 'trained,memory off,random init' ;;
        shapes) row "ltm2_recall_shapes_$tag" python benchmarks/ltm2_recall.py --weights "$weights" --skip hashhop,ruler,formats --shapes-length 1M --queries 10 --other-variants trained --variants trained --section "ltm2_recall_shapes_$tag" ;;
        other) row "ltm2_recall_other_$tag" python benchmarks/ltm2_recall.py --weights "$weights" --skip hashhop,shapes,asides --queries 10 --shapes-length 1M --ruler-lengths 1M --ruler-samples 5 --section "ltm2_recall_other_$tag" ;;
        4letters) hashhop_row "ltm2_recall_4letters_30q_$tag" --skip hashhop,ruler,formats --shapes '4 letters' --shapes-length 1M --queries 30 --seed 1 --other-variants trained --variants trained ;;
        code) row "ltm2_code_$tag" python benchmarks/ltm2_code.py --weights "$weights" --contexts 2k,100k,1M --scored 50k --ablation-context 100k --decode-contexts 1M --threads 2 --section "ltm2_code_$tag" ;;
        signatures) row "ltm2_signatures_$tag" python benchmarks/ltm2_signatures.py --weights "$weights" --context all --count 100 --variants trained --section "ltm2_signatures_$tag" ;;
        decode_1m) row "ltm2_rescore_cost_1m_$tag" python benchmarks/ltm2_rescore_cost.py --weights "$weights" --context 1M --decode 128 --rounds 4 --threads 2 --section "ltm2_rescore_cost_1m_$tag" ;;
        decode_100m) row "ltm2_rescore_cost_100m_$tag" python benchmarks/ltm2_rescore_cost.py --weights "$weights" --context 100M --decode 128 --rounds 3 --threads 2 --section "ltm2_rescore_cost_100m_$tag" ;;
        beam_1m) beam_row "ltm2_beam_alpha_1m_$tag" --length 1M --seeds 0,1 --queries 30 ;;
        beam_10m) beam_row "ltm2_beam_alpha_10m_$tag" --length 10M --seeds 0,1,2,3,4,5,6,7 --queries 30 ;;
        beam_100m) beam_row "ltm2_beam_alpha_100m_$tag" --length 100M --seeds 0 --queries 10 ;;
    esac
done
