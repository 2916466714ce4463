"""Ship a trained model folder: copy, choose its mask rule on the dev boxes, measure, record.

Usage (repository root, after ``cxrweakloc train --config training/configs/cam_nih_mini.toml``)::

    python training/ship_model.py runs/cam/model --name cam
    python training/ship_model.py runs/cam/model --name gradcam --as-gradcam
    python training/ship_model.py --remeasure cam dm   # refresh shipped cards' figures
    python training/ship_model.py --rechoose cam dm    # choose their rules again, measure
    python training/ship_model.py --against cam dm ham # paired comparison with cam, per card

Steps, all through the engine:

1. the trained folder -> ``Resources/Models/<name>`` (with ``--as-gradcam`` the same
   weights are wrapped as a Grad-CAM model on the backbone's last feature map,
   ``backbone.layer4`` for a ResNet);
2. ``evaluate_model(..., choose_rule=True)`` on nih-mini's ``dev_bbox_list.txt`` (514
   expert boxes) -> ``results/eval/<name>``: every rule of the sweep is scored in one
   pass and the best mean box-mode IoU-accuracy at T(IoU)=0.3 (the papers' protocol,
   ``evaluate.CHOOSE_MODE``; mTIoU breaks ties) becomes the card's rule. The dev boxes
   choose the rule, so the dev figures are optimistic for the rule choice; the boxes
   never reach training;
3. the headline figures under that rule and the no-model floor go into the card's
   ``metrics["dev_bbox"]``;
4. the packaging file lists (Slicer CMake, wheel data files) are rewritten
   (``training/sync_lists.py``). Then ``python training/results_table.py --write README.md``.

``--remeasure`` re-runs step 3 for shipped models under the rule their cards already
hold (nothing is chosen again): for when ``evaluate`` gains a figure; ``--rechoose``
re-runs steps 2-3 on shipped models (when the way rules are chosen changes). ``--against BASE``
records in each named card how it compares with ``BASE`` on the same dev boxes
(:func:`~CXRWeakLocLib.evaluate.compare_evaluations`, paired bootstrap, both modes), from
the ``results/eval/<name>`` folders those steps wrote.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from dataclasses import replace
from pathlib import Path

from sync_lists import main as sync_lists

from CXRWeakLocLib.checkpoint import (
    SHIPPED_MODELS_DIR,
    load_model,
    read_card,
    save_model,
    update_card,
)
from CXRWeakLocLib.evaluate import (
    CHOOSE_MODE,
    HEADLINE_PREFIX,
    compare_evaluations,
    evaluate_model,
)
from CXRWeakLocLib.models import build_model

REPO = Path(__file__).resolve().parents[1]
NIH_MINI = REPO.parent / "shared" / "data" / "nih-mini"


def install(source: Path, name: str, as_gradcam: bool) -> Path:
    """Copy (or wrap as Grad-CAM) a trained model folder into ``Resources/Models/<name>``."""
    target = SHIPPED_MODELS_DIR / name
    if not as_gradcam:
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        update_card(target, name=name)
        return target
    loaded = load_model(source)
    card = replace(loaded.card, name=name, method="gradcam", metrics={},
                   architecture={**loaded.card.architecture,
                                 "options": {"target_layer": "backbone."
                                             + loaded.network.backbone.cam_layer}},
                   description="Grad-CAM (captum LayerGradCam, one backward pass per finding) "
                               "on the cam model's network and weights.")
    network = build_model({"method": "gradcam", **card.architecture}, len(card.findings))
    network.classifier.load_state_dict(loaded.network.state_dict())
    return save_model(target, card, network, overwrite=True)


#: What a card says about where its mask rule was chosen.
RULE_CHOSEN_ON = (f"these dev boxes (best {CHOOSE_MODE}-mode IoU-accuracy at 0.3 of the sweep, "
                  "mTIoU breaking ties)")


def calibrate_and_measure(folder: Path, name: str, data: Path = NIH_MINI) -> dict:
    """Choose the mask rule on the dev boxes and record the figures under it."""
    metrics = dict(read_card(folder).metrics)
    metrics["dev_bbox"] = {
        "dataset": "nih-mini dev_bbox_list.txt (ChestX-ray14 expert boxes, 512 px)"}
    update_card(folder, metrics=metrics)
    return remeasure(name, rechoose=True, folder=folder, data=data)


#: ``dev_bbox`` keys earlier versions of ``headline()`` wrote under another name.
RENAMED_KEYS = ("box_iou_accuracy_0_3",)


def remeasure(name: str, rechoose: bool = False, folder: Path | None = None,
              data: Path = NIH_MINI) -> dict:
    """Re-evaluate a shipped model on the dev boxes and refresh its card's figures.

    Under the card's own rule, or with ``rechoose`` under the sweep's best rule
    (:data:`~CXRWeakLocLib.evaluate.CHOOSE_MODE`), which then becomes the card's rule.
    """
    folder = folder or SHIPPED_MODELS_DIR / name
    metrics = dict(read_card(folder).metrics)
    dev_bbox = dict(metrics.get("dev_bbox") or {})
    if not dev_bbox:
        raise SystemExit(f"{name}: no dev_bbox figures to refresh (ship it first)")
    report = evaluate_model("chestxray14", data, str(folder), REPO / "results" / "eval" / name,
                            images_list=data / "dev_bbox_list.txt", device="cpu", sweep=True,
                            choose_rule=rechoose)
    for key in RENAMED_KEYS:
        dev_bbox.pop(key, None)
    metrics["dev_bbox"] = {**dev_bbox, **report.headline()}
    if rechoose:
        metrics["dev_bbox"] |= {"mask_rule": str(report.mask_rule),
                                "mask_rule_chosen_on": RULE_CHOSEN_ON}
        update_card(folder, mask_rule=report.mask_rule, metrics=metrics)
    else:
        update_card(folder, metrics=metrics)
    print(report.summary_line())
    return metrics["dev_bbox"]


def record_comparison(name: str, baseline: str) -> dict:
    """Store ``name`` minus ``baseline`` IoU-accuracy at 0.3 (paired CI) in ``name``'s card."""
    results = REPO / "results" / "eval"
    folder = SHIPPED_MODELS_DIR / name
    metrics = dict(read_card(folder).metrics)
    dev_bbox = dict(metrics.get("dev_bbox") or {})
    for mode, prefix in HEADLINE_PREFIX.items():
        comparison = compare_evaluations(results / name, results / baseline, mode=mode)
        d = comparison.difference
        dev_bbox[f"{prefix}iou_accuracy_0.3_minus_{baseline}"] = d.estimate
        dev_bbox[f"{prefix}iou_accuracy_0.3_minus_{baseline}_ci95"] = [d.low, d.high]
        print(comparison.summary_line())
    update_card(folder, metrics={**metrics, "dev_bbox": dev_bbox})
    return dev_bbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, nargs="?",
                        help="trained model folder (e.g. runs/cam/model)")
    parser.add_argument("--name")
    parser.add_argument("--as-gradcam", action="store_true")
    parser.add_argument("--remeasure", nargs="+", metavar="NAME",
                        help="shipped models to re-evaluate under their cards' rules")
    parser.add_argument("--rechoose", nargs="+", metavar="NAME",
                        help="shipped models whose mask rule is chosen again on the dev boxes")
    parser.add_argument("--against", nargs="+", metavar=("BASE", "NAME"),
                        help="record each NAME's paired comparison with BASE in its card")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.remeasure or args.rechoose or args.against:
        for name in args.remeasure or []:
            remeasure(name)
        for name in args.rechoose or []:
            remeasure(name, rechoose=True)
        baseline, *names = args.against or [None]
        for name in names:
            record_comparison(name, baseline)
        return
    if args.source is None or not args.name:
        parser.error("give a trained model folder and --name (or --remeasure NAME ...)")
    folder = install(args.source, args.name, args.as_gradcam)
    calibrate_and_measure(folder, args.name)
    sync_lists()


if __name__ == "__main__":
    main()
