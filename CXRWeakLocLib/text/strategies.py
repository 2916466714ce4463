"""TB-SMGAN's text strategies: the text a generator or CLIP sees for an image's report.

The seed (a slide summary of TB-SMGAN, Özfidan and Şimşek) names the strategies only in
its result tables: ``rule-based``, ``rule-based-V2``, ``impression``, ``randomized``,
``inverted``, each but ``inverted`` with a (+) and a (−) variant. What each means is
read from those names and the issue; where that took a choice, it is said here.

- ``rule-based±``: the findings found, as one sentence, in the vocabulary's order
  ("Cardiomegaly and possible pneumonia."); an uncertain finding is "possible X".
- ``rule-based-v2±``: the same, each finding with the severity and location words of
  its mentions ("Mild cardiomegaly and small left pleural effusion.").
- ``impression±``: the IMPRESSION section as written (the findings text if a report has
  none).
- ``randomized±``: the findings in shuffled order, each in a phrasing drawn from a few
  synonyms, in one of a few sentence frames; seeded by ``seed`` and the report id, so a
  report's text does not depend on the batch it is in.
- ``inverted``: only the findings the report rules out, each as "no X" ("No
  pneumothorax, no pleural effusion."): the inverse of ``rule-based-``. *Interpreted*:
  the slides give no definition; "negated findings kept as 'no X'" (the issue) would
  otherwise be ``rule-based+``. Empty when the report rules nothing out.
- (+) keeps the negated findings ("... No pneumothorax or pleural effusion."), (−)
  leaves them out; for ``impression-``, the sentences that only deny findings are left
  out. *Interpreted* from the issue ("with and without negated findings"): the seed's
  tables also give (+)/(−) to the original, not fine-tuned CLIP, so in the paper the
  sign may belong to the generator's side (the direction of the edit) instead.

A report with nothing to say gives "No finding." (``inverted``: "").
"""

from __future__ import annotations

import random

from .extraction import Mention, ReportFindings

__all__ = ["STRATEGIES", "PHRASES", "report_text"]

STRATEGIES = (
    "rule-based+", "rule-based-", "rule-based-v2+", "rule-based-v2-", "impression+",
    "impression-", "randomized+", "randomized-", "inverted",
)

#: Phrasings of each finding; the first is the one the fixed strategies use.
PHRASES: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("atelectasis", "atelectatic change", "partial lung collapse"),
    "Cardiomegaly": ("cardiomegaly", "enlarged heart", "enlarged cardiac silhouette"),
    "Effusion": ("pleural effusion", "effusion", "pleural fluid"),
    "Infiltration": ("infiltrate", "pulmonary infiltrate", "infiltration"),
    "Mass": ("mass", "lung mass", "mass lesion"),
    "Nodule": ("nodule", "pulmonary nodule", "nodular opacity"),
    "Pneumonia": ("pneumonia", "infectious process", "pneumonic infiltrate"),
    "Pneumothorax": ("pneumothorax", "collapsed lung with pleural air", "pleural air"),
    "Consolidation": ("consolidation", "airspace disease", "airspace consolidation"),
    "Edema": ("pulmonary edema", "edema", "interstitial edema"),
    "Emphysema": ("emphysema", "hyperinflated lungs", "emphysematous change"),
    "Fibrosis": ("fibrosis", "pulmonary fibrosis", "fibrotic scarring"),
    "Pleural_Thickening": ("pleural thickening", "thickened pleura", "pleural scarring"),
    "Hernia": ("hiatal hernia", "hiatus hernia", "hernia"),
}
_UNCERTAIN = ("possible", "probable", "suspected")
_FRAMES = ("{}.", "Findings of {}.", "The radiograph shows {}.", "There is {}.")
NOTHING = "No finding."


def _join(phrases: list[str], last: str = "and") -> str:
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} {last} {phrases[-1]}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(clauses: list[str]) -> str:
    return f"{_capital(_join(clauses))}." if clauses else ""


def _denial(findings: list[str]) -> str:
    return f"No {_join([PHRASES[f][0] for f in findings], 'or')}." if findings else ""


def _words(mentions: list[Mention]) -> list[str]:
    severity = dict.fromkeys(w for m in mentions for w in m.severity)
    location = dict.fromkeys(w for m in mentions for w in m.location)
    return [*severity, *location]


def _rule_based(findings: ReportFindings, negated: bool, qualified: bool) -> str:
    statuses = findings.statuses
    clauses = []
    for name, status in statuses.items():
        if status == "negative":
            continue
        words = _words([m for m in findings.mentions if m.finding == name
                        and m.status == status]) if qualified else []
        clause = " ".join([*words, PHRASES[name][0]])
        clauses.append(f"possible {clause}" if status == "uncertain" else clause)
    denied = [n for n, s in statuses.items() if s == "negative"] if negated else []
    text = " ".join(t for t in (_sentence(clauses), _denial(denied)) if t)
    return text or NOTHING


def _impression(findings: ReportFindings, negated: bool) -> str:
    section = "IMPRESSION" if any(s == "IMPRESSION" for s, _ in findings.sentences) else None
    kept = []
    for index, (name, sentence) in enumerate(findings.sentences):
        if section is not None and name != section:
            continue
        statuses = {m.status for m in findings.mentions if m.sentence == index}
        if negated or not statuses or statuses != {"negative"}:
            kept.append(sentence)
    return " ".join(kept) or NOTHING


def _randomized(findings: ReportFindings, negated: bool, seed: int) -> str:
    rng = random.Random(f"{seed}:{findings.report_id}")
    items = [(n, s) for n, s in findings.statuses.items() if negated or s != "negative"]
    rng.shuffle(items)
    clauses = []
    for name, status in items:
        prefix = {"uncertain": f"{rng.choice(_UNCERTAIN)} ", "negative": "no "}.get(status, "")
        clauses.append(prefix + rng.choice(PHRASES[name]))
    return _capital(rng.choice(_FRAMES).format(_join(clauses))) if clauses else NOTHING


def _inverted(findings: ReportFindings) -> str:
    denied = [f"no {PHRASES[n][0]}" for n, s in findings.statuses.items() if s == "negative"]
    return f"{_capital(', '.join(denied))}." if denied else ""


def report_text(findings: ReportFindings, strategy: str, seed: int = 0) -> str:
    """The text of one report under one strategy of :data:`STRATEGIES`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if strategy == "inverted":
        return _inverted(findings)
    name, negated = strategy[:-1], strategy.endswith("+")
    if name == "impression":
        return _impression(findings, negated)
    if name == "randomized":
        return _randomized(findings, negated, seed)
    return _rule_based(findings, negated, qualified=name == "rule-based-v2")

