"""``cxrweakloc``: localize | evaluate | compare | train | models | reports | sample | synthetic
| app.

User mistakes end with one line on stderr and a non-zero exit code; a traceback
means a bug.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import __version__
from .core.errors import CXRWeakLocError
from .data.sources import DATASETS

__all__ = ["main", "build_parser"]

logger = logging.getLogger("cxrweakloc")

EXIT_FAILED_INPUTS = 1
EXIT_USAGE = 2
DEFAULT_MODEL = "cam"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="cxrweakloc",
        description="Weakly-supervised localisation of chest X-ray findings.",
    )
    parser.add_argument("--version", action="version", version=f"cxrweakloc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    loc = commands.add_parser("localize", help="heatmaps, masks and exports for radiographs")
    loc.add_argument("inputs", nargs="+", type=Path, help="files or folders (recursive)")
    loc.add_argument("--out", required=True, type=Path, help="output folder")
    loc.add_argument("--model", default=DEFAULT_MODEL, help="shipped model name or folder")
    loc.add_argument("--findings", default="positive",
                     help="positive (default), all, or comma-separated finding names")
    loc.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    loc.add_argument("--overwrite", action="store_true", help="replace existing results")
    loc.add_argument("--batch-size", type=int, default=4)
    loc.add_argument("--workers", type=int, default=2,
                     help="processes decoding files while the model runs (0: none)")
    loc.add_argument("--quiet", action="store_true", help="no progress bar")

    ev = commands.add_parser("evaluate", help="localisation and classification metrics")
    ev.add_argument("--dataset", required=True, choices=DATASETS,
                    help="covid19 has image-level labels only: classification metrics")
    ev.add_argument("--root", required=True, type=Path)
    ev.add_argument("--images-list", type=Path)
    ev.add_argument("--model", default=DEFAULT_MODEL)
    ev.add_argument("--out", required=True, type=Path)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--mask-rule",
                    help="override the card's rule: name[:value[:min_region_fraction]], e.g. "
                         "fraction_of_max:0.4, or fraction_of_max:0.706:0 (every region boxed)")
    ev.add_argument("--sweep-mask-rules", action="store_true",
                    help="also score a grid of mask rules (to choose one on a dev set)")
    ev.add_argument("--batch-size", type=int, default=8)

    cmp = commands.add_parser(
        "compare", help="is model A better than model B? (two evaluate folders, paired)",
        description="A B: two evaluate --out folders. A1 A2 ... --against B1 ...: runs of "
                    "one recipe per side (e.g. seeds); a region's hit is then the fraction "
                    "of a side's runs that reach T.")
    cmp.add_argument("folders", type=Path, nargs="+", metavar="FOLDER",
                     help="evaluate --out folders: A B, or A's runs with --against")
    cmp.add_argument("--against", type=Path, nargs="+", metavar="FOLDER",
                     help="the other side's evaluate folders (its runs)")
    cmp.add_argument("--threshold", type=float, default=0.3, help="T(IoU) (default 0.3)")
    cmp.add_argument("--mode", choices=["pixel", "box"], default="pixel",
                     help="score masks (pixel) or their components' boxes (box)")

    tr = commands.add_parser("train", help="train a model from a TOML run config")
    tr.add_argument("--config", required=True, type=Path)
    tr.add_argument("--device", default="auto")
    tr.add_argument("--no-resume", action="store_true", help="ignore a saved checkpoint")
    tr.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value (TOML syntax for the value)")

    models = commands.add_parser("models", help="list shipped models and their metrics")
    models.add_argument("--json", action="store_true")

    rep = commands.add_parser(
        "reports", help="findings of free-text reports: positive, negative or uncertain",
        description="One row per report and finding mentioned (report_id,finding,status). "
                    "Inputs: .txt (id: file stem), .csv (a text column), Indiana University "
                    "(Open-i) .xml (id: file stem) and their .tgz collection, or folders.")
    rep.add_argument("inputs", nargs="+", type=Path, help="report files or folders")
    rep.add_argument("--out", required=True, type=Path, help="the table (CSV, or JSON)")
    rep.add_argument("--json", action="store_true", help="write the same rows as JSON")
    rep.add_argument("--strategy", nargs="+", default=[], metavar="NAME",
                     help="also write each report's text under these TB-SMGAN strategies to "
                          "<out stem>.texts<suffix>: rule-based+/-, rule-based-v2+/-, "
                          "impression+/-, randomized+/-, inverted")
    rep.add_argument("--text-column", default="text", help="CSV column of the report text")
    rep.add_argument("--id-column", help="CSV column of the report id (default: row number)")
    rep.add_argument("--seed", type=int, default=0, help="seed of the randomized strategy")
    rep.add_argument("--quiet", action="store_true", help="no progress bar")

    sample = commands.add_parser(
        "sample", help="write one SYNTHETIC chest radiograph PNG (generated, not a patient)")
    sample.add_argument("path", type=Path)
    sample.add_argument("--finding", default="Cardiomegaly")
    sample.add_argument("--size", type=int, default=512)
    sample.add_argument("--seed", type=int, default=7)

    app = commands.add_parser(
        "app", help="review and edit results in a browser (needs the app extra)",
        description="A results folder, or radiographs (files or folders) to localise on the "
                    "fly into --out, served as a review and editing page.")
    app.add_argument("inputs", nargs="*", type=Path,
                     help="a results folder (default: --out), or radiographs to localise")
    app.add_argument("--out", type=Path, default=Path("results"),
                     help="where inputs are localised to (default: results)")
    app.add_argument("--model", default=DEFAULT_MODEL, help="model for inputs localised here")
    app.add_argument("--findings", default="positive",
                     help="for inputs localised here: positive (default), all, or names")
    app.add_argument("--host", default="127.0.0.1",
                     help="address to serve on; any other than 127.0.0.1 needs a token")
    app.add_argument("--port", type=int, default=8080)
    app.add_argument("--token", help="the token every request must carry (default: none on "
                                     "127.0.0.1, a new one printed once elsewhere)")
    app.add_argument("--autosave", type=float, default=10.0, metavar="SECONDS",
                     help="save edits this often (default: 10)")

    synthetic = commands.add_parser(
        "synthetic", help="write a synthetic dataset (PNGs, labels, boxes, masks) for evaluate")
    synthetic.add_argument("folder", type=Path)
    synthetic.add_argument("--count", type=int, default=100)
    synthetic.add_argument("--size", type=int, default=256)
    synthetic.add_argument("--seed", type=int, default=0)
    return parser


def _localize(args: argparse.Namespace) -> int:
    from .batch import localize_files
    from .core.radiograph import find_radiographs
    from .core.results import select_findings
    from .distributed import Shard
    from .localize import Localizer

    files = find_radiographs(args.inputs)
    if not files:
        raise CXRWeakLocError(f"no radiographs found in {', '.join(map(str, args.inputs))}")
    shard = Shard.from_env()  # torchrun: this rank's share of the inputs and its GPU
    with shard.process_group():
        localizer = Localizer.from_name(args.model, shard.device(args.device))
        findings = select_findings(args.findings, localizer.card)
        report = localize_files(localizer, files, args.out, findings, args.overwrite,
                                batch_size=max(1, args.batch_size),
                                progress=not args.quiet and shard.main,
                                workers=args.workers, shard=shard)
    if not shard.main:  # rank 0 reports every input
        return EXIT_FAILED_INPUTS if report.failed else 0
    done, skipped, failed = (report.by_status(s) for s in ("done", "skipped", "failed"))
    for outcome in done:
        found = ", ".join(outcome.positive_findings) or "no finding above threshold"
        print(f"{outcome.input}: {found} -> {outcome.output}")
    if skipped:
        print(f"{len(skipped)} input(s) already had complete results (use --overwrite to redo)")
    print(f"model {localizer.card.name}: {len(done)} localized, {len(skipped)} skipped, "
          f"{len(failed)} failed; results in {args.out}")
    for outcome in failed:
        print(f"error: {outcome.error}", file=sys.stderr)
    return EXIT_FAILED_INPUTS if failed else 0


def _parse_overrides(items: list[str]) -> dict[str, dict]:
    import tomllib

    overrides: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise CXRWeakLocError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        overrides.setdefault(section, {})[name] = parsed
    return overrides


def _train(args: argparse.Namespace) -> int:
    from .train.config import load_config
    from .train.engine import train

    config = load_config(args.config, _parse_overrides(args.set))
    result = train(config, device=args.device, resume=not args.no_resume)
    if result is not None:
        auc = result.validation.get("mean_roc_auc")
        print(f"model written to {result.model_folder}"
              + (f" (validation mean ROC-AUC {auc:.3f})" if auc is not None else ""))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_model

    report = evaluate_model(
        dataset=args.dataset, root=args.root, images_list=args.images_list, model=args.model,
        out_dir=args.out, device=args.device, mask_rule=args.mask_rule,
        sweep=args.sweep_mask_rules, batch_size=args.batch_size,
    )
    print(report.summary_line())
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .evaluation import compare_evaluations

    if not 0 < args.threshold <= 1:
        raise CXRWeakLocError("--threshold must be in (0, 1]")
    if args.against:
        first, second = args.folders, args.against
    elif len(args.folders) == 2:
        first, second = args.folders
    else:
        raise CXRWeakLocError(f"compare: expected two folders (A B) or --against, got "
                              f"{len(args.folders)}")
    print(compare_evaluations(first, second, args.threshold, args.mode).summary_line())
    return 0


def _models(args: argparse.Namespace) -> int:
    from .core.card import read_card, shipped_models

    cards = [(folder, read_card(folder)) for folder in shipped_models()]
    if args.json:
        print(json.dumps([{"folder": str(f), **c.to_json()} for f, c in cards], indent=2))
        return 0
    if not cards:
        print("no models installed")
    for folder, card in cards:
        print(f"{card.name} ({card.method}, {card.input_size} px, "
              f"{len(card.findings)} findings) — {folder}")
        if card.description:
            print(f"  {card.description}")
        for line in _metric_lines(card.metrics):
            print(f"  {line}")
    return 0


def _metric_lines(metrics: dict) -> list[str]:
    lines = []
    for split, values in metrics.items():
        if not isinstance(values, dict):
            continue
        parts = []
        for key in ("mean_roc_auc", "iou_accuracy_0.3", "box_iou_accuracy_0.3", "iou_accuracy_0.5",
                    "mtiou"):
            if isinstance(values.get(key), (int, float)):
                parts.append(f"{key} {values[key]:.3f}")
        if parts:
            lines.append(f"{split}: " + ", ".join(parts))
    return lines


def _reports(args: argparse.Namespace) -> int:
    from .text.command import run_reports

    run = run_reports(args.inputs, args.out, as_json=args.json, strategies=args.strategy,
                      text_column=args.text_column, id_column=args.id_column, seed=args.seed,
                      progress=not args.quiet)
    texts = f"; texts in {run.texts_out}" if run.texts_out else ""
    print(f"{run.reports} report(s), {len(run.failures)} failed; {run.rows} finding row(s) "
          f"in {run.out}{texts}")
    for failure in run.failures:
        print(f"error: {failure}", file=sys.stderr)
    return EXIT_FAILED_INPUTS if run.failures else 0


def _sample(args: argparse.Namespace) -> int:
    from .core.findings import finding_by_name
    from .data.synthetic import make_demo_radiograph

    make_demo_radiograph(args.path, size=args.size, seed=args.seed,
                         finding=finding_by_name(args.finding).name)
    print(f"synthetic radiograph with {args.finding} written to {args.path}")
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    from .data.synthetic import write_synthetic_dataset

    if args.count < 1:
        raise CXRWeakLocError("--count must be at least 1")
    write_synthetic_dataset(args.folder, args.count, args.size, args.seed)
    print(f"{args.count} synthetic radiographs written to {args.folder}")
    return 0


def _app(args: argparse.Namespace) -> int:
    # CXRWeakLocApp (beside the engine, not in it: it runs Slicer's MRML) is imported here
    # only, so the engine never imports Slicer or trame.
    try:
        from CXRWeakLocApp.command import run
    except ModuleNotFoundError as error:
        if error.name != "CXRWeakLocApp":
            raise
        raise CXRWeakLocError("cxrweakloc app is not installed with this engine: pip install "
                              "'cxrweakloc[app]'") from None
    return run(args)


COMMANDS = {"localize": _localize, "evaluate": _evaluate, "compare": _compare, "train": _train,
            "models": _models, "reports": _reports, "sample": _sample, "synthetic": _synthetic,
            "app": _app}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cxrweakloc`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("monai").setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except CXRWeakLocError as error:
        print(f"cxrweakloc: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cxrweakloc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
