"""``cxrweakloc reports``: read reports, extract findings, write the long table (and texts).

The table has one row per report and finding mentioned (``report_id,finding,status``),
as CSV or, with ``as_json``, as a JSON list of the same rows. With strategies, their
texts go to a sibling file ``<stem>.texts<suffix>`` (``report_id,strategy,text``).
Both are written atomically, after every readable report is done; unreadable ones are
returned as failures (the caller reports them and exits non-zero).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import CXRWeakLocError
from ..core.files import atomic_write_text, ensure_folder
from .extraction import FindingExtractor
from .reports import ReadFailure, Report, find_report_files, read_reports
from .strategies import STRATEGIES, report_text

__all__ = ["ReportsRun", "run_reports", "texts_path"]


@dataclass
class ReportsRun:
    """What one ``reports`` run read and wrote."""

    reports: int
    rows: int
    out: Path
    texts_out: Path | None = None
    failures: list[ReadFailure] = field(default_factory=list)


def texts_path(out: Path) -> Path:
    """Where the strategies' texts go beside the table ``out``."""
    return out.with_name(f"{out.stem}.texts{out.suffix}")


def _table(rows: list[dict[str, str]], columns: Sequence[str], as_json: bool) -> str:
    if as_json:
        return json.dumps(rows, indent=1) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def run_reports(
    inputs: Sequence[str | Path], out: Path, *, as_json: bool = False,
    strategies: Sequence[str] = (), text_column: str = "text", id_column: str | None = None,
    seed: int = 0, progress: bool = False,
) -> ReportsRun:
    """Findings (and strategy texts) of every readable report in ``inputs``."""
    out = Path(out)
    if out.is_dir():
        raise CXRWeakLocError(f"{out}: is a folder; --out takes a file name")
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise CXRWeakLocError(f"unknown strategy {', '.join(unknown)} "
                              f"(known: {', '.join(STRATEGIES)})")
    if not find_report_files(inputs):
        raise CXRWeakLocError(f"no report files in {', '.join(map(str, inputs))}")
    items = list(read_reports(inputs, text_column=text_column, id_column=id_column))
    reports = [item for item in items if isinstance(item, Report)]
    failures = [item for item in items if isinstance(item, ReadFailure)]
    rows, texts = [], []
    for findings in FindingExtractor().extract(reports, progress=progress):
        rows.extend(findings.rows())
        texts.extend({"report_id": findings.report_id, "strategy": name,
                      "text": report_text(findings, name, seed)} for name in strategies)
    ensure_folder(out.parent)
    atomic_write_text(out, _table(rows, ("report_id", "finding", "status"), as_json))
    run = ReportsRun(len(reports), len(rows), out, failures=failures)
    if strategies:
        run.texts_out = texts_path(out)
        atomic_write_text(run.texts_out, _table(texts, ("report_id", "strategy", "text"),
                                                as_json))
    return run
