"""How the shipped ``dm`` model is made, stage by stage (see ``training/dm/README.md``).

Run from the repository root, each step after the previous one::

    python -m training.dm.recipe anchor        # anchor image + seed of the alignment stage
    cxrweakloc train training/configs/dm_align_nih_mini.toml
    python -m training.dm.recipe seed-aligned  # alignment module + cam classifier
    cxrweakloc train training/configs/dm_aligned_nih_mini.toml
    python -m training.dm.recipe masks         # disease masks, pseudo masks, figures
    cxrweakloc train training/configs/dm_nih_mini.toml
    cxrweakloc train training/configs/dm_pdm_nih_mini.toml
    python -m training.dm.recipe ablation      # evaluate CAM / +alignment / +DM / +PDM
    python -m training.dm.recipe ship          # Resources/Models/dm (+ figures)
    training/dm/train_seeds.sh                 # +alignment+DM with seeds 1 and 2
    python -m training.dm.recipe seeds         # evaluate each seed and their mean
    python -m training.dm.recipe ensemble      # the seeds as one model, evaluated
    python -m training.dm.recipe paper-rule    # the ablation under the paper's fixed rules
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import torch

from CXRWeakLocLib.checkpoint import load_model
from CXRWeakLocLib.core.card import ModelCard, update_card
from CXRWeakLocLib.core.findings import CHESTXRAY14
from CXRWeakLocLib.core.masks import MaskRule
from CXRWeakLocLib.data.dataset import records_dataset
from CXRWeakLocLib.evaluation import (
    CHOOSE_MODE,
    HEADLINE_PREFIX,
    compare_evaluations,
    evaluate_model,
)
from CXRWeakLocLib.methods.dm.stages import (
    collect_aligned_cams,
    disease_masks,
    mean_normal_image,
    pseudo_disease_masks,
    write_ensemble,
    write_seed,
)
from CXRWeakLocLib.train.config import TrainConfig, load_config
from CXRWeakLocLib.train.run import training_records
from CXRWeakLocLib.train.state import load_training_state
from training.dm import figures

logger = logging.getLogger("dm-recipe")

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "training" / "configs"
RUNS = REPO / "runs" / "dm"
FIGURES = RUNS / "figures"
SHIPPED = REPO / "Resources" / "Models" / "dm"
NIH_MINI = REPO.parent / "shared" / "data" / "nih-mini"
#: the shipped dm model's run (+alignment+DM, the config's default seed)
SHIPPED_RUN = RUNS / "attention" / "model"
#: ablation rows: label, model folder, the paper's mean IoU-accuracy at T 0.3 / 0.5 / 0.7
VARIANTS = (
    ("CAM", REPO / "Resources" / "Models" / "cam", (0.31, 0.17, 0.06)),
    ("+alignment", RUNS / "aligned" / "model", (0.37, 0.21, 0.10)),
    ("+alignment+DM", SHIPPED_RUN, (0.47, 0.27, 0.13)),
    ("+alignment+PDM", RUNS / "pdm" / "model", (0.43, 0.24, 0.11)),
)
#: the shipped variant (+alignment+DM) trained with each seed: its attention-stage model;
#: the config's default seed ships
SEED_RUNS = {0: SHIPPED_RUN, 1: RUNS / "attention_seed1" / "model",
             2: RUNS / "attention_seed2" / "model"}
SHIPPED_SEED = 0
ENSEMBLE_RUN = RUNS / "ensemble" / "model"
ABLATION_OUT = REPO / "results" / "eval" / "dm-ablation"
SEEDS_OUT = REPO / "results" / "eval" / "dm-seeds"
PAPER_RULE_OUT = REPO / "results" / "eval" / "dm-paper-rule"
#: Wang et al.'s fixed binarisation (the paper's [18]): the heatmap normalised to
#: [0, 255], thresholded at 60 and at 180 separately, every isolated region boxed
PAPER_THRESHOLDS = (60, 180)
MASK_SIZE = 32
EXAMPLES = 6


def _config(name: str) -> TrainConfig:
    return load_config(CONFIGS / name)


def _card(config: TrainConfig) -> ModelCard:
    """The card fields the data pipeline needs (size, normalisation, findings)."""
    return ModelCard(name=config.run.name, method=config.model.method, architecture={},
                     findings=config.model.findings or [f.name for f in CHESTXRAY14],
                     input_size=config.model.input_size,
                     normalization=dict(config.model.normalization))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    """A model's tensors from a model folder or a (running) training's ``last`` state."""
    if (path / "state.json").is_file():
        parts, meta = load_training_state(path)
        logger.info("weights of %s: training state of epoch %s", path, meta["epoch"])
        return parts["model"]
    return load_model(path).network.state_dict()


def anchor(args: argparse.Namespace) -> None:
    """Anchor = mean normal training image; seed = cam weights + anchor."""
    config = _config("dm_align_nih_mini.toml")
    size = int(config.model.options.get("anchor_size", 128))
    image = mean_normal_image(training_records(config), _card(config), size)
    seed = write_seed(config.path(config.model.init_from),
                      [_weights(Path(args.cam)), {"anchor": image}])
    figures.save_anchor(image, FIGURES / "anchor.png")
    logger.info("wrote %s and %s", seed, FIGURES / "anchor.png")


def seed_aligned(args: argparse.Namespace) -> None:
    """Seed of the +alignment classifier: the trained alignment module + the cam classifier."""
    config = _config("dm_aligned_nih_mini.toml")
    seed = write_seed(config.path(config.model.init_from),
                      [_weights(Path(args.align)), _weights(Path(args.cam))])
    logger.info("wrote %s", seed)


def masks(args: argparse.Namespace) -> None:
    """Disease masks from the +alignment classifier, pseudo masks from the anchor; figures."""
    model = load_model(RUNS / "aligned" / "model")
    network, card = model.network, model.card
    config = _config("dm_nih_mini.toml")
    records = training_records(config)
    cams = collect_aligned_cams(network, records, card)
    learned = disease_masks(cams, card.findings, MASK_SIZE, args.min_probability,
                            args.min_images, args.threshold)
    pseudo = pseudo_disease_masks(network.anchor, card.findings, MASK_SIZE)
    base = RUNS / "aligned" / "model"
    write_seed(config.path(config.model.init_from), [base, {"disease_masks": learned.masks}])
    pdm_config = _config("dm_pdm_nih_mini.toml")
    write_seed(pdm_config.path(pdm_config.model.init_from), [base, {"disease_masks": pseudo}])
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / "disease_masks.json").write_text(json.dumps(
        {"images": learned.counts, "fallback_top_k": learned.fallback,
         "min_probability": args.min_probability, "min_images": args.min_images,
         "threshold": args.threshold}, indent=2) + "\n")
    figures.save_masks(learned.masks, card.findings, network.anchor,
                       FIGURES / "disease_masks.png",
                       f"Disease masks (CAMs of P >= {args.min_probability:g} positives, "
                       f"threshold {args.threshold:g})", learned.counts)
    figures.save_masks(pseudo, card.findings, network.anchor, FIGURES / "pseudo_masks.png",
                       "Pseudo disease masks from the anchor (lungs; heart if asymmetric)")
    examples = torch.stack(_examples(records, card))
    with torch.inference_mode():
        aligned, _ = network.align(examples)
        params = network.aligner.parameters_of(examples)
    figures.save_alignment_examples(examples, aligned, network.anchor, params,
                                    FIGURES / "alignment_examples.png")
    logger.info("masks from %s: %s", card.name, learned.counts)


def _examples(records, card) -> list[torch.Tensor]:
    """A few training images spread over the list, as network inputs."""
    dataset = records_dataset(records[:: max(1, len(records) // EXAMPLES)][:EXAMPLES], card)
    return [item["image"] for item in dataset]


def _slug(label: str) -> str:
    return label.strip("+").replace("+", "-").lower() or "cam"


def _measure(folder: Path, out: Path, record: bool = False,
             rule: MaskRule | None = None) -> dict:
    """Choose the model's mask rule by the sweep on the dev boxes, score it under that rule
    (with ``record``, the rule and the figures go into the model's card); with ``rule``,
    score under that fixed rule instead, nothing chosen."""
    report = evaluate_model(dataset="chestxray14", root=NIH_MINI, model=str(folder),
                            out_dir=out, images_list=NIH_MINI / "dev_bbox_list.txt",
                            device="cpu", progress=False, mask_rule=rule,
                            choose_rule=rule is None)
    headline = {**report.headline(), "mask_rule": str(report.mask_rule)}
    (out / "headline.json").write_text(json.dumps({"headline": headline}, indent=2) + "\n")
    logger.info("%s: %s", folder, report.summary_line())
    if record:
        update_card(folder, mask_rule=report.mask_rule,
                    metrics={**load_model(folder).card.metrics, "dev_bbox": headline})
    return headline


def ablation(args: argparse.Namespace) -> None:
    """Each variant: choose its mask rule by the sweep, then score it under that rule."""
    for label, folder, _ in VARIANTS:
        if args.variants and label not in args.variants:
            continue
        _measure(folder, ABLATION_OUT / _slug(label), record=folder.parent.parent == RUNS)
    _write_results()


def seeds(args: argparse.Namespace) -> None:
    """+alignment+DM trained with each seed, measured like the ablation rows.

    The config's default seed (:data:`SHIPPED_SEED`) ships; the others show the spread.
    No images here could choose among them fairly: validation splits differ by seed (and
    the classifier they start from trained on most of the others'), and the dev images
    are in every seed's training list.
    """
    for seed in args.seeds:
        if not (SEED_RUNS[seed] / "model.json").is_file():
            raise SystemExit(f"seed {seed}: no trained model at {SEED_RUNS[seed]} "
                             "(training/dm/train_seeds.sh)")
        _measure(SEED_RUNS[seed], SEEDS_OUT / f"seed{seed}")
    _write_results()


def ensemble(args: argparse.Namespace) -> None:
    """The seeds of +alignment+DM as one model (mean logits and maps), measured like them."""
    missing = [seed for seed, run in SEED_RUNS.items() if not (run / "model.json").is_file()]
    if missing:
        raise SystemExit(f"seeds {missing}: not trained (training/dm/train_seeds.sh)")
    write_ensemble(ENSEMBLE_RUN, [SEED_RUNS[seed] for seed in sorted(SEED_RUNS)], name="dm")
    _measure(ENSEMBLE_RUN, SEEDS_OUT / "ensemble", record=True)
    _write_results()


def paper_rule_of(threshold: int) -> MaskRule:
    """Wang et al.'s binarisation at ``threshold`` of 255, every region kept."""
    return MaskRule("fraction_of_max", threshold / 255, min_region_fraction=0.0)


def paper_rule(args: argparse.Namespace) -> None:
    """Each variant under the paper's fixed rules (nothing chosen on the dev boxes)."""
    for threshold in PAPER_THRESHOLDS:
        for label, folder, _ in VARIANTS:
            _measure(folder, PAPER_RULE_OUT / f"t{threshold}" / _slug(label),
                     rule=paper_rule_of(threshold))
    _write_results()


def _write_results() -> None:
    (REPO / "training" / "dm" / "RESULTS.md").write_text(
        _results_markdown(ABLATION_OUT) + _seeds_markdown(ABLATION_OUT / "cam")
        + _paper_rule_markdown())


def _results_markdown(out: Path) -> str:
    lines = [
        "# dm ablation on the nih-mini dev boxes",
        "",
        "Mean IoU-accuracy over the 8 boxed findings (each box scored on its own finding's",
        "heatmap), 446 images / 514 boxes of `dev_bbox_list.txt`; each variant's mask rule",
        f"chosen by `--sweep-mask-rules` on the same set ({CHOOSE_MODE} mode, as for every",
        "shipped model). Paper:",
        "ChestX-ray14, ResNet-50 at 512 px trained on 86k images (Tables 1, 2); its T(IoU)",
        "compares boxes drawn around the binarised map with the expert boxes, i.e. box mode.",
        "Intervals: 95% bootstrap over the dev boxes; \"minus CAM\" is paired (the same boxes",
        "drawn for both). \"Rule chosen on other patients\": each of 5 patient folds scored",
        "under the best rule of the other four (how much the choice on these boxes flatters).",
    ]
    heads = {label: json.loads(path.read_text())["headline"] for label, _, _ in VARIANTS
             if (path := out / _slug(label) / "headline.json").is_file()}
    floor = next(({t: head[f"no_model_floor_iou_accuracy_{t}"] for t in ("0.3", "0.5", "0.7")}
                  for head in heads.values()
                  if head.get("no_model_floor_iou_accuracy_0.3") is not None), {})
    for title, mode in (("Box mode (the paper's protocol)", "box"), ("Pixel mode", "pixel")):
        prefix = HEADLINE_PREFIX[mode]
        lines += ["", f"## {title}", "",
                  "| Model | mask rule | T=0.3 (95% CI) | T=0.3, rule chosen on other patients | "
                  "minus CAM at 0.3 (paired) | T=0.5 | T=0.7 | paper 0.3 / 0.5 / 0.7 |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, _, paper in VARIANTS:
            published = f"{paper[0]:.2f} / {paper[1]:.2f} / {paper[2]:.2f}"
            head = heads.get(label)
            if head is None:
                lines.append(f"| {label} | not measured | | | | | | {published} |")
                continue
            low, high = head[f"{prefix}iou_accuracy_0.3_ci95"]
            lines.append(
                f"| {label} | `{head['mask_rule']}` | {head[f'{prefix}iou_accuracy_0.3']:.3f} "
                f"({low:.3f}-{high:.3f}) | {_cell(head.get(f'cv_{prefix}iou_accuracy_0.3'))} | "
                f"{_minus_cam(out, label, mode)} | "
                f"{head[f'{prefix}iou_accuracy_0.5']:.3f} | "
                f"{head[f'{prefix}iou_accuracy_0.7']:.3f} | {published} |")
        if floor:
            lines.append(f"| no-model floor (mean box) | - | {floor['0.3']:.3f} | - | - | "
                         f"{floor['0.5']:.3f} | {floor['0.7']:.3f} | - |")
    lines += ["", "Mean ROC-AUC (dev images): " + ", ".join(
        f"{label} {head['mean_roc_auc']:.3f}" for label, head in heads.items()) + ".", "",
        "Per-finding tables: `results/eval/dm-ablation/<variant>/metrics.md`.", ""]
    return "\n".join(lines)


def _seeds_markdown(cam: Path) -> str:
    """The seeds table: each seed of +alignment+DM, and their mean, against CAM."""
    measured = {seed: SEEDS_OUT / f"seed{seed}" for seed in SEED_RUNS
                if (SEEDS_OUT / f"seed{seed}" / "headline.json").is_file()}
    if not measured or not (cam / "per_image.csv").is_file():
        return ""
    heads = {seed: json.loads((folder / "headline.json").read_text())["headline"]
             for seed, folder in measured.items()}
    lines = ["", "## Seeds of +alignment+DM", "",
             "The same recipe (`dm_nih_mini.toml`) with `run.seed` 0, 1, 2 (the seed draws",
             "the validation split and the batch order); each seed's rule chosen as above.",
             "The config's default seed 0 ships; no images here could choose among the",
             "seeds fairly (validation splits differ by seed, and the classifier they",
             "start from trained on most of the others'; the dev images are in every",
             "seed's training list, so their ROC-AUC, shown, measures fit more than",
             "generalisation). The last row pairs CAM with the mean over",
             "the seeds (a box's hit = the fraction of seeds that reach T): what the recipe",
             "gives, not one run.", "",
             "| seed | mean ROC-AUC (dev) | mask rule | box 0.3 | box 0.3, rule chosen on other "
             "patients | box minus CAM (paired) | pixel 0.3 | pixel minus CAM (paired) | "
             "box 0.5 | pixel 0.5 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for seed, head in heads.items():
        label = f"{seed} (shipped)" if seed == SHIPPED_SEED else str(seed)
        lines.append(_seed_row(label, measured[seed], head, cam))
    if len(heads) > 1:
        mean = {key: sum(head[key] for head in heads.values()) / len(heads)
                for key in ("box_iou_accuracy_0.3", "iou_accuracy_0.3", "box_iou_accuracy_0.5",
                            "iou_accuracy_0.5")}
        minus = {mode: compare_evaluations(list(measured.values()), cam, mode=mode)
                 .difference.as_difference() for mode in HEADLINE_PREFIX}
        lines.append(
            f"| mean of {len(heads)} | | | {mean['box_iou_accuracy_0.3']:.3f} | | {minus['box']} | "
            f"{mean['iou_accuracy_0.3']:.3f} | {minus['pixel']} | "
            f"{mean['box_iou_accuracy_0.5']:.3f} | {mean['iou_accuracy_0.5']:.3f} |")
    ensemble_head = SEEDS_OUT / "ensemble" / "headline.json"
    if ensemble_head.is_file():
        head = json.loads(ensemble_head.read_text())["headline"]
        lines.append(_seed_row(f"ensemble of {len(SEED_RUNS)} (one model)",
                               SEEDS_OUT / "ensemble", head, cam))
    return "\n".join(lines) + "\n"


def _paper_rule_markdown() -> str:
    """The ablation under Wang et al.'s fixed thresholds, paired with CAM under the same."""
    measured = [t for t in PAPER_THRESHOLDS
                if all((PAPER_RULE_OUT / f"t{t}" / _slug(label) / "headline.json").is_file()
                       for label, _, _ in VARIANTS)]
    if not measured:
        return ""
    lines = ["", "## The paper's fixed rule (nothing chosen on the dev boxes)", "",
             "Wang et al.'s binarisation, which the paper cites: each heatmap normalised to",
             "[0, 255] and thresholded at 60 or at 180, a box around every isolated region",
             "(`min_region_fraction` 0); the same rule for every variant, so CAM and dm are",
             "compared without a rule chosen on these boxes (the decision rule for reading",
             "this table was written down before it existed: training/dm/README.md).", "",
             "| Model | threshold | box 0.3 (95% CI) | box minus CAM (paired) | pixel 0.3 | "
             "pixel minus CAM (paired) | box 0.5 | box 0.7 | paper 0.3 / 0.5 / 0.7 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for threshold in measured:
        out = PAPER_RULE_OUT / f"t{threshold}"
        for label, _, paper in VARIANTS:
            head = json.loads((out / _slug(label) / "headline.json").read_text())["headline"]
            low, high = head["box_iou_accuracy_0.3_ci95"]
            lines.append(
                f"| {label} | {threshold}/255 | {head['box_iou_accuracy_0.3']:.3f} "
                f"({low:.3f}-{high:.3f}) | {_minus_cam(out, label, 'box')} | "
                f"{head['iou_accuracy_0.3']:.3f} | {_minus_cam(out, label, 'pixel')} | "
                f"{head['box_iou_accuracy_0.5']:.3f} | {head['box_iou_accuracy_0.7']:.3f} | "
                f"{paper[0]:.2f} / {paper[1]:.2f} / {paper[2]:.2f} |")
    return "\n".join(lines) + "\n"


def _seed_row(label: str, folder: Path, head: dict, cam: Path) -> str:
    """One measured model's row of the seeds table, with its paired difference to CAM."""
    minus = {mode: compare_evaluations(folder, cam, mode=mode).difference.as_difference()
             for mode in HEADLINE_PREFIX}
    return (f"| {label} | {head['mean_roc_auc']:.3f} | `{head['mask_rule']}` | "
            f"{head['box_iou_accuracy_0.3']:.3f} | {_cell(head.get('cv_box_iou_accuracy_0.3'))} | "
            f"{minus['box']} | {head['iou_accuracy_0.3']:.3f} | {minus['pixel']} | "
            f"{head['box_iou_accuracy_0.5']:.3f} | {head['iou_accuracy_0.5']:.3f} |")


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _minus_cam(out: Path, label: str, mode: str) -> str:
    """``+0.018 (-0.006 to +0.041)``: the variant minus CAM on the same boxes."""
    if label == "CAM" or not (out / "cam" / "per_image.csv").is_file():
        return "-"
    comparison = compare_evaluations(out / _slug(label), out / "cam", mode=mode)
    return comparison.difference.as_difference()


def ship(args: argparse.Namespace) -> None:
    """Copy the trained dm model and its figures into Resources/Models/dm."""
    source = SHIPPED_RUN
    load_model(source)  # validates card and weights
    if SHIPPED.exists():
        shutil.rmtree(SHIPPED)
    shutil.copytree(source, SHIPPED)
    for name in ("anchor.png", "disease_masks.png", "pseudo_masks.png",
                 "alignment_examples.png", "disease_masks.json"):
        shutil.copy2(FIGURES / name, SHIPPED / name)
    logger.info("shipped %s (%.1f MB)", SHIPPED,
                sum(p.stat().st_size for p in SHIPPED.iterdir()) / 1e6)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    cam_default = str(REPO / "Resources" / "Models" / "cam")
    for name, function in (("anchor", anchor), ("seed-aligned", seed_aligned)):
        step = steps.add_parser(name, help=function.__doc__)
        step.add_argument("--cam", default=cam_default,
                          help="cam model folder (or a cam run's 'last' training state)")
        step.set_defaults(function=function)
        if name == "seed-aligned":
            step.add_argument("--align", default=str(RUNS / "align" / "model"),
                              help="alignment-stage model folder (or its 'last' training state)")
    step = steps.add_parser("masks", help=masks.__doc__)
    step.add_argument("--min-probability", type=float, default=0.8)
    step.add_argument("--min-images", type=int, default=5)
    step.add_argument("--threshold", type=float, default=0.5)
    step.set_defaults(function=masks)
    step = steps.add_parser("ablation", help=ablation.__doc__)
    step.add_argument("--variants", nargs="*", choices=[v[0] for v in VARIANTS],
                      help="measure only these (default: all); RESULTS.md lists all measured")
    step.set_defaults(function=ablation)
    step = steps.add_parser("seeds", help=seeds.__doc__.splitlines()[0])
    step.add_argument("--seeds", type=int, nargs="+", choices=sorted(SEED_RUNS),
                      default=sorted(SEED_RUNS))
    step.set_defaults(function=seeds)
    steps.add_parser("ensemble", help=ensemble.__doc__).set_defaults(function=ensemble)
    steps.add_parser("paper-rule", help=paper_rule.__doc__).set_defaults(function=paper_rule)
    steps.add_parser("ship", help=ship.__doc__).set_defaults(function=ship)
    args = parser.parse_args()
    args.function(args)


if __name__ == "__main__":
    main()
