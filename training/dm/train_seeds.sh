#!/usr/bin/env bash
# +alignment+DM (dm_nih_mini.toml, unchanged) trained again with seeds 1 and 2, beside
# the seed-0 run of run_stages.sh, for `recipe.py seeds` (~6 min each on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
for seed in 1 2; do
    flock /tmp/cxr-cpu.lock .venv/bin/cxrweakloc train --config training/configs/dm_nih_mini.toml \
        --set run.seed=$seed --set "run.output=\"../../runs/dm/attention_seed$seed\""
done
