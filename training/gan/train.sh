#!/usr/bin/env bash
# Train one GAN config, then score it on the synthetic dev set with the mask-rule
# sweep. Usage: training/gan/train.sh training/configs/taggan_synthetic.toml
# Heavy jobs queue on the shared CPU lock; one thread is much faster than two on a
# busy 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
config=$1
name=$(basename "$config" .toml)
export OMP_NUM_THREADS=1
[ -d runs/gan/synthetic_dev ] || .venv/bin/cxrweakloc synthetic runs/gan/synthetic_dev --count 200 --seed 1
[ -d runs/gan/synthetic_test ] || .venv/bin/cxrweakloc synthetic runs/gan/synthetic_test --count 300 --seed 2
flock /tmp/cxr-cpu.lock .venv/bin/cxrweakloc train --config "$config"
flock /tmp/cxr-cpu.lock .venv/bin/cxrweakloc evaluate --dataset synthetic --root runs/gan/synthetic_dev \
    --model "runs/gan/$name/model" --out "runs/gan/$name/eval_dev" --sweep-mask-rules
