#!/usr/bin/env bash
# The dm recipe after the alignment stage, in one queue slot (run it under
# `flock /tmp/cxr-cpu.lock`), the shipped model first: +alignment classifier, masks,
# attention retraining, its evaluation and shipping; then the ablation rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
cli=.venv/bin/cxrweakloc
recipe="./.venv/bin/python -m training.dm.recipe"
$cli train --config training/configs/dm_aligned_nih_mini.toml
$recipe masks
$cli train --config training/configs/dm_nih_mini.toml
$recipe ablation --variants +alignment+DM
$recipe ship
$recipe ablation --variants +alignment
$cli train --config training/configs/dm_pdm_nih_mini.toml
$recipe ablation --variants +alignment+PDM
if [ -f Resources/Models/cam/model.json ]; then
    $recipe ablation --variants CAM
fi
# the shipped model by name, through the CLI, as every model is measured
$cli evaluate --dataset chestxray14 --root ../shared/data/nih-mini \
    --images-list ../shared/data/nih-mini/dev_bbox_list.txt --model dm --out results/eval/dm
