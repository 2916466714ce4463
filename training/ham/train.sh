#!/usr/bin/env bash
# Train the shipped `ham` model (run from the repository root; ~30-40 min on 2 CPU cores).
# Starts from the shipped cam model when it exists; otherwise from the cam run's latest
# checkpoint (runs/cam/last), whose epoch ship.py records in the card.
set -euo pipefail
init=Resources/Models/cam
if [ ! -f "$init/model.safetensors" ]; then
    init=runs/ham_init/cam.safetensors
    .venv/bin/python -m training.ham.init_weights runs/cam/last "$init"
fi
exec .venv/bin/cxrweakloc train --config training/configs/ham_nih_mini.toml \
    --set "model.init_from=\"../../$init\"" "$@"   # relative to the config's folder
