#!/usr/bin/env bash
# Train one GAN config, then choose its mask rule: on the synthetic dev set for a
# synthetic config; a model trained on real radiographs gets its rule on the nih-mini
# dev boxes when it is shipped (release/ship.py), not from synthetic images.
# Usage: training/gan/train.sh training/configs/taggan_synthetic.toml
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
dataset=$(.venv/bin/python -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["data"]["dataset"])' "$config")
if [ "$dataset" = synthetic ]; then
    flock /tmp/cxr-cpu.lock .venv/bin/python -m training.gan.choose_rule "runs/gan/$name/model"
else
    echo "runs/gan/$name/model: trained on $dataset; choose its rule when shipping:"
    echo "  python -m release.ship runs/gan/$name/model --name NAME"
fi
