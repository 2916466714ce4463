#!/usr/bin/env bash
# Train the synthetic TagGAN, VA-GAN and CAM baseline under ONE hold of the shared CPU
# lock: each GAN process uses one thread, so the two run side by side on the 2 cores
# (one thread each is much faster than two threads each on a busy machine). Then the
# dev-set sweeps, the Grad-CAM wrapper, and TagGAN on nih-mini if asked (--nih).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
cx=.venv/bin/cxrweakloc
[ -d runs/gan/synthetic_dev ] || $cx synthetic runs/gan/synthetic_dev --count 200 --seed 1
[ -d runs/gan/synthetic_test ] || $cx synthetic runs/gan/synthetic_test --count 300 --seed 2
flock /tmp/cxr-cpu.lock bash -c "
    $cx train --config training/configs/taggan_synthetic.toml > runs/gan/taggan_synthetic.log 2>&1 &
    $cx train --config training/configs/vagan_synthetic.toml > runs/gan/vagan_synthetic.log 2>&1 &
    wait
    $cx train --config training/gan/cam_synthetic.toml > runs/gan/cam_synthetic.log 2>&1
    .venv/bin/python -m training.gan.gradcam_from_cam runs/gan/cam_synthetic/model runs/gan/gradcam_synthetic/model
    for name in taggan_synthetic vagan_synthetic gradcam_synthetic; do
        .venv/bin/python -m training.gan.choose_rule runs/gan/\$name/model
    done
"
if [ "${1:-}" = "--nih" ]; then
    flock /tmp/cxr-cpu.lock bash -c "
        $cx train --config training/configs/taggan_nih_mini.toml > runs/gan/taggan_nih_mini.log 2>&1 &
        $cx train --config training/configs/vagan_nih_mini.toml > runs/gan/vagan_nih_mini.log 2>&1 &
        wait
    "
fi
