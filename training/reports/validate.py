"""Validation of ``cxrweakloc reports`` on the Indiana University (Open-i) reports.

Run from the repository root::

    python training/reports/validate.py            # writes training/reports/RESULTS.md
    python training/reports/validate.py sample     # the unlabelled sentence sample (once)

The 3,955 reports are split by id before any rule was written: ``id % 5 == 0`` is the
held-out part (looked at once, at the end), ``id % 5 == 1`` the source of the 100
hand-labelled sentences (``Testing/data/report_sentences.csv``), the rest the
development part the rules were tuned on.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
from pathlib import Path

from CXRWeakLocLib.text.reports import Report, read_reports

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO.parent / "shared" / "data" / "fixtures" / "reports" / "NLMCXR_reports.tgz"
SENTENCES = REPO / "Testing" / "data" / "report_sentences.csv"
SPLITS = ("development", "sentences", "held-out")


def split_of(report_id: str) -> str:
    """The part of the collection a report belongs to (by its numeric id)."""
    remainder = int(report_id) % 5
    return "held-out" if remainder == 0 else "sentences" if remainder == 1 else "development"


def load_collection(path: Path = COLLECTION) -> list[Report]:
    """The collection's readable reports (the 28 without findings text are left out)."""
    return [r for r in read_reports([path]) if isinstance(r, Report)]


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.?!])\s+(?=[A-Z0-9])", text)
    return [p.strip() for p in parts if len(p.split()) >= 3]


def sample_sentences(reports: list[Report], seed: int = 20, abnormal: int = 60,
                     any_report: int = 40) -> list[dict[str, str]]:
    """Sentences to label by hand, from the ``sentences`` part only.

    ``abnormal`` come from reports whose MeSH headings are not only ``normal`` (so the
    sample holds findings), ``any_report`` from all reports; at most one per report.
    """
    rng = random.Random(seed)
    pool = [r for r in reports if split_of(r.report_id) == "sentences"]
    rng.shuffle(pool)
    chosen: list[dict[str, str]] = []
    wanted = {"abnormal": abnormal, "any": any_report}
    for report in pool:
        kind = "abnormal" if wanted["abnormal"] and set(report.mesh_major) - {"normal"} else "any"
        if not wanted[kind]:
            continue
        candidates = [(name, s) for name, text in report.finding_sections
                      for s in _sentences(text)]
        if candidates:
            section, sentence = rng.choice(candidates)
            chosen.append({"report_id": report.report_id, "section": section,
                           "sentence": sentence, "labels": ""})
            wanted[kind] -= 1
        if not any(wanted.values()):
            break
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="validate", choices=["validate", "sample"])
    args = parser.parse_args()
    reports = load_collection()
    if args.command == "sample":
        rows = sample_sentences(reports)
        SENTENCES.parent.mkdir(parents=True, exist_ok=True)
        with SENTENCES.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"{len(rows)} sentences written to {SENTENCES}")


if __name__ == "__main__":
    main()
