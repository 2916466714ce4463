#!/usr/bin/env bash
# Score one model folder on every set of RESULTS.md: the synthetic test set (exact
# masks), nih-mini's dev boxes, and the TBX11K / CheXlocalize fixtures.
# Usage: training/gan/evaluate.sh MODEL_FOLDER OUT_FOLDER [--mask-rule name:value]
set -euo pipefail
cd "$(dirname "$0")/../.."
model=$1 out=$2
shift 2
export OMP_NUM_THREADS=1
data=../shared/data
[ -d runs/gan/synthetic_test ] || .venv/bin/cxrweakloc synthetic runs/gan/synthetic_test --count 300 --seed 2
run() { flock /tmp/cxr-cpu.lock .venv/bin/cxrweakloc evaluate --model "$model" "$@" || true; }
run --dataset synthetic --root runs/gan/synthetic_test --out "$out/synthetic_test" "$@"
run --dataset chestxray14 --root $data/nih-mini --images-list $data/nih-mini/dev_bbox_list.txt \
    --out "$out/nih_dev" "$@"
run --dataset chexpert --root $data/fixtures/chexpert --out "$out/chexlocalize" "$@"
run --dataset tbx11k --root $data/fixtures/tbx11k --out "$out/tbx11k" "$@"
