"""Reading radiology reports: plain text, a CSV column, IU (Open-i) XML and its ``.tgz``.

Every input becomes a :class:`Report`: an id, its sections in order (``FINDINGS``,
``IMPRESSION``, ``INDICATION``, ``COMPARISON``, ``TECHNIQUE``, or ``TEXT`` for text
before any heading) and, for IU reports, the experts' MeSH major headings. A file or
report that cannot be read becomes a :class:`ReadFailure` with a one-line message, so a
batch goes on past it.

Report ids: a ``.txt`` or ``.xml`` file's stem, an archive member's stem, and for a CSV
row the value of its id column (``--id-column``), else ``<csv stem>:<row number>``
(the first data row is row 1). Two reports with the same id are refused (the second
one), since the findings table is keyed by id.
"""

from __future__ import annotations

import csv
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..core.errors import CXRWeakLocError

__all__ = [
    "FINDING_SECTIONS",
    "ReadFailure",
    "Report",
    "ReportError",
    "SUPPORTED_SUFFIXES",
    "find_report_files",
    "parse_iu_xml",
    "read_reports",
    "split_sections",
]

#: File types read (a ``.tgz`` / ``.tar.gz`` holds IU XML files).
SUPPORTED_SUFFIXES = (".txt", ".xml", ".csv", ".tgz", ".tar.gz")

#: Sections whose text states the findings of the study; the others (indication,
#: comparison, technique) say why it was taken or how, not what it shows.
FINDING_SECTIONS = ("TEXT", "FINDINGS", "IMPRESSION")

#: Heading words (any case) and the section they open.
_HEADINGS = {
    "FINDINGS": "FINDINGS", "FINDING": "FINDINGS",
    "IMPRESSION": "IMPRESSION", "IMPRESSIONS": "IMPRESSION", "CONCLUSION": "IMPRESSION",
    "CONCLUSIONS": "IMPRESSION", "OPINION": "IMPRESSION",
    "INDICATION": "INDICATION", "INDICATIONS": "INDICATION",
    "CLINICAL INDICATION": "INDICATION", "HISTORY": "INDICATION",
    "CLINICAL HISTORY": "INDICATION", "REASON FOR EXAM": "INDICATION",
    "REASON FOR EXAMINATION": "INDICATION",
    "COMPARISON": "COMPARISON", "COMPARISONS": "COMPARISON",
    "TECHNIQUE": "TECHNIQUE", "EXAM": "TECHNIQUE", "EXAMINATION": "TECHNIQUE",
    "PROCEDURE": "TECHNIQUE",
}
_NAMES = "|".join(sorted((re.escape(h) for h in _HEADINGS), key=len, reverse=True))
#: A heading followed by a colon: at the start of a line in any case, or anywhere in
#: capitals ("... normal. IMPRESSION: ...").
_HEADING = re.compile(
    rf"(?:(?im:^[ \t]*)(?i:(?P<line>{_NAMES}))|\b(?P<caps>{_NAMES}))[ \t]*:",
)


class ReportError(CXRWeakLocError):
    """An input that cannot be read as radiology reports (the whole file)."""


@dataclass(frozen=True)
class Report:
    """One radiology report, split into sections."""

    report_id: str
    #: (section, text) pairs in the report's order; one entry per section name
    sections: tuple[tuple[str, str], ...]
    source: str
    #: IU experts' MeSH major headings, e.g. ``Cardiomegaly/mild`` (empty elsewhere)
    mesh_major: tuple[str, ...] = field(default=())

    def section(self, name: str) -> str:
        """The text of one section ("" if the report has none)."""
        return dict(self.sections).get(name, "")

    @property
    def finding_sections(self) -> tuple[tuple[str, str], ...]:
        """The sections that state findings (:data:`FINDING_SECTIONS`), in order."""
        return tuple((name, text) for name, text in self.sections if name in FINDING_SECTIONS)


@dataclass(frozen=True)
class ReadFailure:
    """A file or report that could not be read, with the reason on one line."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


def split_sections(text: str) -> tuple[tuple[str, str], ...]:
    """Split report text at its headings (``FINDINGS:``, ``IMPRESSION:``, ...).

    Text before the first heading is section ``TEXT``; a heading that occurs twice
    adds to its section. Whitespace is collapsed to single spaces.
    """
    sections: dict[str, list[str]] = {}
    name, start = "TEXT", 0
    for match in _HEADING.finditer(text):
        heading = (match.group("line") or match.group("caps")).upper()
        sections.setdefault(name, []).append(text[start:match.start()])
        name, start = _HEADINGS[" ".join(heading.split())], match.end()
    sections.setdefault(name, []).append(text[start:])
    joined = ((n, " ".join(" ".join(parts).split())) for n, parts in sections.items())
    return tuple((n, t) for n, t in joined if t)


def parse_iu_xml(data: bytes, report_id: str, source: str) -> Report:
    """An Indiana University (Open-i) report from its XML bytes."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as error:
        raise ReportError(f"{source}: malformed XML ({error})") from None
    parts = root.findall(".//AbstractText")
    if not parts:
        raise ReportError(f"{source}: not an IU report (no AbstractText sections)")
    sections: dict[str, list[str]] = {}
    for part in parts:
        label = " ".join((part.get("Label") or "TEXT").upper().split())
        text = " ".join("".join(part.itertext()).split())
        if text:
            sections.setdefault(_HEADINGS.get(label, label), []).append(text)
    mesh = tuple(" ".join(m.text.split()) for m in root.findall("./MeSH/major") if m.text)
    return Report(report_id, tuple((n, " ".join(t)) for n, t in sections.items()), source,
                  mesh)


def find_report_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, hidden entries skipped) into report files.

    A path given explicitly is kept whatever its suffix, so that a wrong file gets its
    own error rather than vanishing.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if not item.is_dir():
            found.append(item)
            continue
        for candidate in sorted(p for p in item.rglob("*") if p.is_file()):
            hidden = any(part.startswith(".") for part in candidate.relative_to(item).parts)
            if not hidden and candidate.name.lower().endswith(SUPPORTED_SUFFIXES):
                found.append(candidate)
    return found


def read_reports(
    inputs: Iterable[str | Path], text_column: str = "text", id_column: str | None = None,
) -> Iterator[Report | ReadFailure]:
    """Every report of ``inputs`` (files and folders), or a failure per unreadable one.

    ``text_column`` and ``id_column`` name a CSV's report text and report id columns.
    A report without text in its findings sections (:data:`FINDING_SECTIONS`) is a
    failure ("empty report").
    """
    seen: dict[str, str] = {}
    for path in find_report_files(inputs):
        try:
            for item in _read_file(path, text_column, id_column):
                yield _checked(item, seen)
        except ReportError as error:
            yield ReadFailure(str(path), _without_source(str(error), str(path)))


def _checked(item: Report | ReadFailure, seen: dict[str, str]) -> Report | ReadFailure:
    if isinstance(item, ReadFailure):
        return item
    if not item.finding_sections:
        return ReadFailure(item.source, "empty report (no FINDINGS or IMPRESSION text)")
    if item.report_id in seen:
        return ReadFailure(item.source, f"duplicate report id {item.report_id!r} "
                                        f"(also {seen[item.report_id]})")
    seen[item.report_id] = item.source
    return item


def _without_source(message: str, source: str) -> str:
    return message.removeprefix(f"{source}: ")


def _read_file(path: Path, text_column: str, id_column: str | None,
               ) -> Iterator[Report | ReadFailure]:
    name = path.name.lower()
    if name.endswith((".tgz", ".tar.gz")):
        yield from _read_archive(path)
    elif name.endswith(".csv"):
        yield from _read_csv(path, text_column, id_column)
    elif name.endswith(".xml"):
        yield parse_iu_xml(_read_bytes(path), path.stem, str(path))
    elif name.endswith(".txt"):
        yield Report(path.stem, split_sections(_read_text(path)), str(path))
    elif path.exists():
        raise ReportError(f"{path}: not a report file (expected "
                          f"{', '.join(SUPPORTED_SUFFIXES)})")
    else:
        raise ReportError(f"{path}: no such file or folder")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ReportError(f"{path}: cannot read ({error.strerror or error})") from None


def _read_text(path: Path) -> str:
    try:
        return _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not UTF-8 text") from None


def _read_archive(path: Path) -> Iterator[Report | ReadFailure]:
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                stem = PurePosixPath(member.name)
                if not member.isfile() or stem.name.startswith(".") \
                        or stem.suffix.lower() != ".xml":
                    continue
                source = f"{path}:{member.name}"
                handle = archive.extractfile(member)
                try:
                    yield parse_iu_xml(handle.read(), stem.stem, source)
                except ReportError as error:
                    yield ReadFailure(source, _without_source(str(error), source))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ReportError(f"{path}: cannot read archive ({error})") from None


def _read_csv(path: Path, text_column: str, id_column: str | None,
              ) -> Iterator[Report | ReadFailure]:
    lines = _read_text(path).splitlines(keepends=True)
    try:
        reader = csv.DictReader(lines)
        columns = reader.fieldnames or []
        for column, flag in ((text_column, "--text-column"), (id_column, "--id-column")):
            if column is not None and column not in columns:
                raise ReportError(f"{path}: no column {column!r} (columns: "
                                  f"{', '.join(columns) or 'none'}; choose one with {flag})")
        for number, row in enumerate(reader, start=1):
            source = f"{path} row {number}"
            report_id = (row[id_column] or "").strip() if id_column else f"{path.stem}:{number}"
            if not report_id:
                yield ReadFailure(source, f"empty {id_column!r}")
                continue
            yield Report(report_id, split_sections(row[text_column] or ""), source)
    except csv.Error as error:
        raise ReportError(f"{path}: malformed CSV ({error})") from None
