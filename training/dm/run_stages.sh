#!/usr/bin/env bash
# The dm recipe after the alignment stage, in one queue slot (run it under
# `flock /tmp/cxr-cpu.lock`): +alignment classifier, masks, attention retraining
# with learned (shipped) and pseudo masks, and their evaluation.
set -euo pipefail
cd "$(dirname "$0")/../.."
cli=.venv/bin/cxrweakloc
python=.venv/bin/python
$cli train --config training/configs/dm_aligned_nih_mini.toml
$python training/dm/recipe.py masks
$cli train --config training/configs/dm_nih_mini.toml
$cli train --config training/configs/dm_pdm_nih_mini.toml
$python training/dm/recipe.py ablation --variants +alignment+DM +alignment +alignment+PDM
