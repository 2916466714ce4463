"""Findings of radiology reports: medspaCy target rules and ConText, offline.

The pipeline is a blank English spaCy pipeline (no model, nothing downloaded), spaCy's
rule-based sentencizer, medspaCy's target matcher with the phrases of
:mod:`~CXRWeakLocLib.text.rules`, and medspaCy's ConText with its default English cues
(less :data:`~CXRWeakLocLib.text.rules.DROPPED_DEFAULT_CUES`) plus radiology cues.
Only the FINDINGS and IMPRESSION sections (or unheaded text) are read; each section is
its own document, so no cue reaches across sections.

A mention's status: **negative** if ConText negates it (or a size word denies it:
"heart size is normal"); else **uncertain** if it is hedged or hypothetical ("cannot
exclude", "if"); else, if it is only historical ("history of pneumonia"), it is left out
as no statement about this image; else **positive**. A report's status for a finding
is positive if any mention is, else uncertain if any is, else negative; findings
without a mention get none.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tqdm import tqdm

from ..core.errors import CXRWeakLocError
from ..core.findings import CHESTXRAY14
from .reports import Report, split_sections
from .rules import (
    CONTEXT_RULES,
    DROPPED_DEFAULT_CUES,
    IGNORED,
    LOCATION_WORDS,
    QUALIFIED,
    QUALIFIED_TARGETS,
    SEVERITY_WORDS,
    TARGETS,
    token_pattern,
)

__all__ = ["STATUSES", "Mention", "ReportFindings", "FindingExtractor", "build_pipeline"]

logger = logging.getLogger(__name__)

STATUSES = ("positive", "uncertain", "negative")
_ORDER = {f.name: i for i, f in enumerate(CHESTXRAY14)}
_IGNORE = "IGNORE"
#: ConText categories that deny a finding; a heart's size is judged by size words only.
_NEGATING = {"NEGATED_EXISTENCE"}
_SIZE_CATEGORIES = {c for _, statuses in QUALIFIED.values() for c in statuses}
_PHRASE_WORDS = set(SEVERITY_WORDS) | set(LOCATION_WORDS) | {"-", "and", "to"}
_PREPOSITIONS = {"in", "at", "within", "of", "involving", "along", "over"}


@dataclass(frozen=True)
class Mention:
    """One finding named in one sentence."""

    finding: str
    text: str
    #: index into :attr:`ReportFindings.sentences`
    sentence: int
    status: str
    #: severity and location words ConText attached to it, in text order
    severity: tuple[str, ...] = ()
    location: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportFindings:
    """The findings of one report: its sentences and the mentions found in them."""

    report_id: str
    #: (section, sentence) of the report's FINDINGS / IMPRESSION text, in order
    sentences: tuple[tuple[str, str], ...]
    mentions: tuple[Mention, ...]

    @property
    def statuses(self) -> dict[str, str]:
        """Finding -> report-level status (positive > uncertain > negative), vocabulary order."""
        best: dict[str, str] = {}
        for mention in self.mentions:
            current = best.get(mention.finding)
            if current is None or STATUSES.index(mention.status) < STATUSES.index(current):
                best[mention.finding] = mention.status
        return dict(sorted(best.items(), key=lambda item: _ORDER[item[0]]))

    def rows(self) -> list[dict[str, str]]:
        """The long-table rows ``report_id, finding, status``."""
        return [{"report_id": self.report_id, "finding": f, "status": s}
                for f, s in self.statuses.items()]


def _medspacy():
    try:
        import medspacy  # noqa: F401  (registers the medspaCy pipeline components)
        import spacy
        from medspacy.context import ConTextRule
        from medspacy.target_matcher import TargetRule
    except ImportError as error:
        raise CXRWeakLocError(
            f"report extraction needs medspaCy ({error}); install the 'reports' extra "
            "as the README says") from None
    return spacy, ConTextRule, TargetRule


@functools.lru_cache(maxsize=1)
def build_pipeline():
    """The spaCy pipeline (built once per process; no download, no model)."""
    spacy, ConTextRule, TargetRule = _medspacy()
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    targets = [(label, phrase) for label, phrases in {**TARGETS, **QUALIFIED_TARGETS}.items()
               for phrase in phrases] + [(_IGNORE, phrase) for phrase in IGNORED]
    nlp.add_pipe("medspacy_target_matcher").add(
        [TargetRule(phrase, label, pattern=token_pattern(phrase)) for label, phrase in targets])
    context = nlp.add_pipe("medspacy_context", config={"rules": None})
    defaults = [r for r in ConTextRule.from_json(context.DEFAULT_RULES_FILEPATH)
                if r.literal not in DROPPED_DEFAULT_CUES]
    ours = [ConTextRule(literal, category, direction=direction, **options)
            for literal, category, direction, options in CONTEXT_RULES]
    for rule in defaults:
        if rule.category in _NEGATING and rule.allowed_types is None:
            rule.excluded_types = {"HEART"}
    context.add(defaults + ours)
    logger.debug("report pipeline: %d target rules, %d ConText rules (%d of medspaCy's)",
                 len(targets), len(defaults) + len(ours), len(defaults))
    return nlp


def _status(entity) -> str | None:
    """A target's status, or None when it states nothing about this image."""
    base = "positive"
    if entity.label_ in QUALIFIED:
        categories = {m.category for m in entity._.modifiers}
        given = [s for c, s in QUALIFIED[entity.label_][1].items() if c in categories]
        if not given or given[0] is None:
            return None
        base = given[0]
    if entity._.is_negated or base == "negative":
        return "negative"
    if entity._.is_uncertain or entity._.is_hypothetical or base == "uncertain":
        return "uncertain"
    return None if entity._.is_historical else "positive"


def _qualifiers(entity) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Severity and location words of a mention's phrase, in text order.

    The words read are those right before the target ("small left pleural effusion")
    and after it behind a preposition ("atelectasis in the right lower lobe"); for a
    target qualified by a size word, those around the size word too ("the heart is
    mildly enlarged").
    """
    doc, sentence = entity.doc, entity.sent
    spans = [(entity.start, entity.end)] + sorted(
        m.modifier_span for m in entity._.modifiers if m.category in _SIZE_CATEGORIES)
    found: list[int] = []
    for start, end in spans:
        i = start - 1
        while i >= sentence.start and doc[i].lower_ in _PHRASE_WORDS:
            found.append(i)
            i -= 1
        j = end
        if j < sentence.end and doc[j].lower_ in _PREPOSITIONS:
            j += 2 if j + 1 < sentence.end and doc[j + 1].lower_ == "the" else 1
            while j < sentence.end and doc[j].lower_ in _PHRASE_WORDS:
                found.append(j)
                j += 1
    words = [doc[i].lower_ for i in sorted(set(found))]
    return (tuple(dict.fromkeys(w for w in words if w in SEVERITY_WORDS)),
            tuple(dict.fromkeys(w for w in words if w in LOCATION_WORDS)))


class FindingExtractor:
    """Findings of reports by the medspaCy pipeline of :func:`build_pipeline`."""

    def __init__(self) -> None:
        self.nlp = build_pipeline()

    def extract(self, reports: Iterable[Report], progress: bool = False,
                ) -> Iterator[ReportFindings]:
        """The findings of each report, in order (a progress bar if ``progress``)."""
        reports = list(reports)
        for report in tqdm(reports, desc="reports", unit="report", disable=not progress):
            sections = report.finding_sections
            docs = self.nlp.pipe(text for _, text in sections)
            yield _findings(report.report_id, [(name, doc) for (name, _), doc
                                               in zip(sections, docs, strict=True)])

    def extract_text(self, text: str, report_id: str = "text") -> ReportFindings:
        """The findings of one report given as text (headings split as in a ``.txt``)."""
        return next(self.extract([Report(report_id, split_sections(text), "text")]))


def _findings(report_id: str, parts: list) -> ReportFindings:
    sentences: list[tuple[str, str]] = []
    mentions: list[Mention] = []
    for section, doc in parts:
        first = len(sentences)
        starts = {}
        for number, sentence in enumerate(doc.sents):
            sentences.append((section, sentence.text.strip()))
            starts[sentence.start] = first + number
        for entity in doc.ents:
            if entity.label_ == _IGNORE:
                continue
            status = _status(entity)
            if status is None:
                continue
            finding = QUALIFIED[entity.label_][0] if entity.label_ in QUALIFIED else entity.label_
            mentions.append(Mention(finding, entity.text, starts[entity.sent.start], status,
                                    *_qualifiers(entity)))
    return ReportFindings(report_id, tuple(sentences), tuple(mentions))
