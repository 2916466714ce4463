"""All 14 heatmaps of one image: in-model CAM (one forward) vs Grad-CAM per finding.

Same network (the ``cam`` model's classifier), same prepared input. Grad-CAM needs
one backward pass per finding: with ``monai.visualize.GradCAM`` (explicit
``class_idx`` per finding; identity ``postprocessing`` instead of MONAI's
normaliser) and with captum's ``LayerGradCam`` through the engine's ``GradCAMNet``.
The ratio is Grad-CAM time over CAM time, from one run.

    python benchmarks/gradcam_ratio.py [--size 1024] [--repeats 5] [--model cam]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import (
    add_common_arguments,
    apply_threads,
    machine_line,
    median_seconds,
    model_folder,
    print_table,
    synthetic_pixels,
)
from monai.visualize import GradCAM
from torch import nn

from CXRWeakLocLib.core.radiograph import Radiograph
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.methods.gradcam import GradCAMNet

TARGET_RATIO = 10.0
TARGET_LAYER = "backbone.layer4"


class Logits(nn.Module):
    """The classifier's logits alone, as MONAI's CAM classes expect a model to return."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)[0]


def identity(maps: torch.Tensor) -> torch.Tensor:
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--size", type=int, default=1024, help="input image side in pixels")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    apply_threads(args)
    with tempfile.TemporaryDirectory(prefix="cxr-gradcam-") as temporary:
        folder, description = model_folder(args.model, Path(temporary))
        localizer = Localizer.from_name(str(folder), args.device)
    classifier = localizer.model.network
    if isinstance(classifier, GradCAMNet):  # a gradcam model: time its classifier
        classifier = classifier.classifier
    findings = list(range(classifier.num_classes))
    radiograph = Radiograph(synthetic_pixels(args.size))
    batch = localizer.prepare(radiograph)[None].to(localizer.model.device)

    def cam() -> torch.Tensor:
        with torch.inference_mode():
            return classifier(batch)[1]

    monai_gradcam = GradCAM(Logits(classifier), f"classifier.{TARGET_LAYER}",
                            postprocessing=identity)

    def monai_maps() -> list[torch.Tensor]:
        return [monai_gradcam(batch, class_idx=[c]) for c in findings]

    captum_gradcam = GradCAMNet(classifier, TARGET_LAYER)

    def captum_maps() -> torch.Tensor:
        return captum_gradcam(batch)[1]

    cam()  # warm-up (allocations, kernel choice) for every method alike
    times = {name: median_seconds(function, args.repeats) for name, function in (
        ("in-model CAM (1 forward)", cam),
        ("Grad-CAM, MONAI (14 forward + backward)", monai_maps),
        ("Grad-CAM, captum LayerGradCam (14 x)", captum_maps),
    )}
    # On a GAP + linear head Grad-CAM is ReLU(CAM) up to scale: same maps, other cost.
    ours = torch.relu(cam()[0]).flatten(1)
    theirs = nn.functional.adaptive_avg_pool2d(
        torch.cat(monai_maps())[:, 0], cam().shape[-2:]).flatten(1)
    agreement = float(np.nanmedian([np.corrcoef(a, b)[0, 1] for a, b in zip(
        ours.cpu().numpy(), theirs.detach().cpu().numpy(), strict=True)]))

    print(machine_line(args.device))
    print(f"model: {description}; input {args.size} px -> {localizer.card.input_size} px; "
          f"{len(findings)} findings; median of {args.repeats}\n")
    base = times["in-model CAM (1 forward)"]
    print_table(["method (all 14 heatmaps, 1 image)", "seconds", "x CAM time"],
                [(name, f"{seconds:.3f}", f"{seconds / base:.1f}")
                 for name, seconds in times.items()])
    ratio = times["Grad-CAM, MONAI (14 forward + backward)"] / base
    print(f"\ntarget: CAM >= {TARGET_RATIO:.0f}x faster than MONAI Grad-CAM: {ratio:.1f}x "
          f"({'met' if ratio >= TARGET_RATIO else 'MISSED'}); median map correlation "
          f"ReLU(CAM) vs MONAI Grad-CAM {agreement:.3f}")


if __name__ == "__main__":
    main()
