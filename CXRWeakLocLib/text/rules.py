"""The rules of report extraction, as data: target phrases per finding and ConText cues.

Phrase syntax (compiled to spaCy token patterns by :func:`token_pattern`): tokens are
separated by spaces; each is a regular expression that must match a whole lower-cased
token; a token in square brackets is optional. ``[pleural] effusions?`` matches
"effusion", "Pleural effusions", ...

Choices of vocabulary (the MeSH mapping in ``training/reports/validate.py`` makes the
same ones, and ``Testing/data/report_sentences.md`` labels by them):

- *granuloma* is **not** Nodule: a healed, usually calcified granuloma is named as such
  by radiologists and tagged apart by the IU experts ("Calcified Granuloma"); a
  "calcified nodule" is a Nodule.
- *airspace disease / opacity* is Consolidation (alveolar filling); a bare "opacity"
  or "density" names no finding.
- *blunting of the costophrenic angle* is Effusion (as CheXpert's labeller reads it);
  sharp angles deny it.
- *vascular congestion*, *CHF*, *cephalization*, *Kerley lines* are Edema (as CheXpert).
- *hyperinflated / hyperexpanded lungs*, *COPD* and *bullae* are Emphysema (its
  radiographic signs); subcutaneous and mediastinal emphysema are not.
- *scarring* of the lung is Fibrosis; *pleural* scarring is Pleural_Thickening.
- *infection / infectious process* is Pneumonia, except tuberculosis.
- The heart is Cardiomegaly only with a size word: "the heart is enlarged" (positive),
  "heart size is normal" (negative), "borderline heart size" (uncertain). Costophrenic
  angles likewise: blunted (Effusion) or sharp (no Effusion).
"""

from __future__ import annotations

__all__ = [
    "TARGETS", "QUALIFIED", "IGNORED", "CONTEXT_RULES", "DROPPED_DEFAULT_CUES",
    "SEVERITY_WORDS", "LOCATION_WORDS", "token_pattern",
]

#: Target phrases per finding (the 14 ChestX-ray14 names).
TARGETS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        "atelectas[ie]s", "atelectatic", "(lobar|lobe|lung) collapse", "collapsed (lobe|lung)",
        "collapse of the [left|right] [upper|middle|lower] (lobe|lung)",
    ),
    "Cardiomegaly": ("cardiomegaly", "cardiac enlargement"),
    "Effusion": ("[pleural] effusions?", "pleural fluid", "hydrothorax"),
    "Infiltration": ("infiltrates?", "infiltration", "infiltrative"),
    "Mass": ("mass(es)?", "mass lesions?"),
    "Nodule": (
        "nodules?", "nodular", "nodularity", "nodular (density|densities|opacity|opacities)",
    ),
    "Pneumonia": (
        "pneumonias?", "pneumonic", "bronchopneumonia", "pneumonitis", "infection",
        "(infectious|inflammatory) (process|etiology)",
    ),
    "Pneumothorax": ("pneumothora(x|ces|xes)", "hydropneumothorax"),
    "Consolidation": (
        "consolidations?", "consolidative", "consolidated",
        "air [-] space (disease|process|consolidation)",
        "airspace (disease|process|consolidation)",
    ),
    "Edema": (
        "o?edema", "(vascular|venous|pulmonary) congestion", "congestion",
        "[congestive] heart failure", "chf", "cephalization", "kerley [b] lines",
        "(fluid|volume) overload", "pulmonary venous hypertension",
        "[central] [pulmonary] (vascular|venous) (prominence|engorgement)",
    ),
    "Emphysema": (
        "emphysema", "emphysematous", "copd", "chronic obstructive (pulmonary|lung) disease",
        "hyperinflat(ed|ion)", "hyperexpan(ded|sion)", "hyperaerat(ed|ion)",
        "over [-] inflat(ed|ion)", "overinflat(ed|ion)", "hyperlucen(t|cy)", "bullae",
        "bullous",
    ),
    "Fibrosis": ("fibros[ie]s", "fibrotic", "scar(s|ring|red)?", "honeycomb(ing)?"),
    "Pleural_Thickening": (
        "pleural thickening", "thickening of the pleura", "thickened pleura",
        "pleural [-] parenchymal (scarring|thickening|scar|scars)",
        "pleuroparenchymal (scarring|thickening|scar|scars)", "pleural (scarring|scar|scars)",
        "apical [pleural] capping", "pleural plaques?", "[interlobar] fissural thickening",
        "thickening (of|in) the [minor|major|right|left] fissures?",
        "pleural [-] peripheral (scarring|thickening)",
    ),
    "Hernia": ("hernias?", "(hiatal|hiatus) hernias?"),
}

#: Targets that are a finding only with a qualifier word near them: label ->
#: (finding, {ConText category: status}). The first category of the dict that modifies
#: the target gives its status (None: no mention, e.g. normal vessels name no finding);
#: none of them, no mention. A qualifier word has one category whatever it qualifies
#: (medspaCy keeps one of two rules that match the same words).
QUALIFIED: dict[str, tuple[str, dict[str, str | None]]] = {
    "HEART": ("Cardiomegaly", {"QUALIFIER_BORDERLINE": "uncertain",
                               "QUALIFIER_PROMINENT": "uncertain",
                               "NEGATED_EXISTENCE": "negative",
                               "QUALIFIER_NORMAL": "negative",
                               "QUALIFIER_ENLARGED": "positive",
                               "QUALIFIER_INCREASED": "positive"}),
    "COSTOPHRENIC": ("Effusion", {"NEGATED_EXISTENCE": "negative",
                                  "QUALIFIER_NORMAL": "negative",
                                  "QUALIFIER_BLUNTED": "positive"}),
    "VESSELS": ("Edema", {"NEGATED_EXISTENCE": None, "QUALIFIER_NORMAL": None,
                          "QUALIFIER_PROMINENT": "positive", "QUALIFIER_INCREASED": "positive",
                          "QUALIFIER_CONGESTED": "positive"}),
}

#: Phrases of qualified targets.
QUALIFIED_TARGETS: dict[str, tuple[str, ...]] = {
    "HEART": (
        "heart", "heart size", "(cardiac|heart) (silhouette|size|contours?|shadow|outline)",
        "cardiac silhouette size", "cardio [-] (mediastinal|pulmonary) (silhouette|contours?)",
        "cardiomediastinal (silhouette|contours?|shadow|size)",
        "cardiopulmonary silhouette", "cardiac and mediastinal (contours?|silhouettes?)",
        "heart and mediastinum",
    ),
    "COSTOPHRENIC": (
        "costophrenic", "costophrenic (angles?|sulcus|sulci|recess|recesses)", "cp angles?",
        "(lateral|posterior) (sulcus|sulci)",
    ),
    "VESSELS": (
        "(pulmonary|central|lung) (vascularity|vasculature|vessels)",
        "vascularity", "vasculature",
    ),
}

#: Phrases that contain a target word but name something else (matched, then dropped;
#: the longer match wins over the target inside it).
IGNORED: tuple[str, ...] = (
    "pericardial effusions?", "subcutaneous emphysema", "mediastinal emphysema",
    "mass effect", "(tuberculosis|tuberculous|tb|mycobacterial) infection",
    "heart (border|borders)", "hilar congestion", "granulomatous (infection|process|disease)",
    "cystic fibrosis",
)

#: Severity and location words kept by the ``rule-based-v2`` text strategy.
SEVERITY_WORDS = (
    "minimal", "mild", "mildly", "slight", "slightly", "small", "tiny", "trace", "moderate",
    "moderately", "large", "severe", "severely", "marked", "markedly", "massive",
    "extensive", "subtle", "minor",
)
LOCATION_WORDS = (
    "left", "right", "bilateral", "bilaterally", "bibasilar", "bibasal", "basilar", "basal",
    "base", "bases", "apical", "apex", "apices", "upper", "middle", "lower", "lobe",
    "lingula", "lingular", "perihilar", "hilar", "retrocardiac", "midlung", "subsegmental",
    "segmental", "focal", "diffuse", "patchy", "multifocal", "streaky", "linear",
    "platelike", "discoid", "interstitial", "posterior", "anterior", "lateral", "lung",
    "lungs", "hemithorax", "zone", "zones",
)

#: medspaCy's default English ConText cues left out: clinical-note phrasings that
#: misread radiology reports.
DROPPED_DEFAULT_CUES = {
    # in a radiology impression these ask a question (uncertain), they deny nothing
    "evaluate for", "to exclude", "test for", "checked for",
    # forward only: replaced by a rule that also reads "the effusion resolved"
    "resolved",
    # patient-history verbs, and "free" ("free air" is a finding)
    "decline", "deny", "never had", "free", "prophylaxis",
}

# (literal, category, direction, {pattern/allowed_types/max_scope...})
_RULES: list[tuple[str, str, str, dict]] = []


def _rule(literal: str, category: str, direction: str, **options) -> None:
    _RULES.append((literal, category, direction, options))


_QUALIFIER_WORDS = {
    "QUALIFIER_NORMAL": ("normal", "unremarkable", "normal in size", "sharp", "sharply",
                         "clear", "preserved", "well-defined"),
    "QUALIFIER_ENLARGED": ("enlarged", "enlargement", "large"),
    "QUALIFIER_INCREASED": ("increased",),
    "QUALIFIER_BLUNTED": ("blunted", "blunting", "blunt"),
    "QUALIFIER_CONGESTED": ("engorged", "engorgement", "congested", "cephalized", "indistinct"),
    "QUALIFIER_BORDERLINE": ("borderline", "upper limits of normal", "upper limit of normal",
                             "upper normal", "top normal", "top-normal"),
    "QUALIFIER_PROMINENT": ("prominent", "prominence"),
}
for _category, _literals in _QUALIFIER_WORDS.items():
    for _literal in _literals:
        _rule(_literal, _category, "BIDIRECTIONAL", allowed_types=set(QUALIFIED), max_scope=6)
# longer than medspaCy's "is not" (a negation the heart ignores), so it wins the overlap
_rule("is not enlarged", "QUALIFIER_NORMAL", "BIDIRECTIONAL", pattern=[
    {"LOWER": {"IN": ["is", "are", "was", "appears"]}, "OP": "?"}, {"LOWER": "not"},
    {"LOWER": {"IN": ["significantly", "substantially", "definitely"]}, "OP": "?"},
    {"LOWER": "enlarged"}], allowed_types=set(QUALIFIED), max_scope=6)

_not_heart = {"excluded_types": {"HEART"}}
for _literal in ("clear of", "absence of", "resolution of", "interval resolution of",
                 "nor", "no radiographic evidence of", "no signs of"):
    _rule(_literal, "NEGATED_EXISTENCE", "FORWARD", **_not_heart)
_rule("not seen", "NEGATED_EXISTENCE", "BACKWARD", pattern=[
    {"LOWER": {"IN": ["is", "are", "was", "were"]}, "OP": "?"}, {"LOWER": "not"},
    {"LOWER": {"IN": ["seen", "identified", "present", "visualized", "evident", "appreciated",
                      "demonstrated", "noted", "visible"]}}], **_not_heart)
_rule("has resolved", "NEGATED_EXISTENCE", "BACKWARD", pattern=[
    {"LOWER": {"IN": ["has", "have", "had"]}}, {"LOWER": "since", "OP": "?"},
    {"LOWER": {"IN": ["resolved", "cleared", "disappeared"]}}], **_not_heart)
_rule("resolved", "NEGATED_EXISTENCE", "BIDIRECTIONAL", pattern=[
    {"LOWER": {"IN": ["resolved", "cleared"]}}], max_scope=4, **_not_heart)
_rule("no longer seen", "NEGATED_EXISTENCE", "BIDIRECTIONAL", pattern=[
    {"LOWER": "no"}, {"LOWER": "longer"},
    {"LOWER": {"IN": ["seen", "visualized", "present", "evident", "identified", "visible"]}}],
    **_not_heart)
_rule("within normal limits", "NEGATED_EXISTENCE", "BACKWARD", pattern=[
    {"LOWER": "within"}, {"LOWER": "normal", "OP": "?"}, {"LOWER": {"IN": ["limits", "limit"]}},
    {"LOWER": "of", "OP": "?"}, {"LOWER": "normal", "OP": "?"}], max_scope=5)
_rule("is absent", "NEGATED_EXISTENCE", "BACKWARD", pattern=[
    {"LOWER": {"IN": ["is", "are"]}}, {"LOWER": "absent"}], **_not_heart)

for _literal in ("may", "might", "could", "questionable", "question of", "possibly",
                 "probable", "suspected", "suspect", "suggests", "suggestive of",
                 "suggesting", "concerning for", "equivocal", "indeterminate", "versus",
                 "vs", "differential", "cannot exclude", "can not exclude", "cannot rule out",
                 "cannot be excluded", "?",
                 "concern for", "would be a consideration", "is another consideration",
                 "is in the differential", "in the appropriate clinical setting",
                 "in the correct clinical setting", "favoring", "favor"):
    _rule(_literal, "POSSIBLE_EXISTENCE",
          "BACKWARD" if _literal in ("cannot be excluded", "not excluded", "?",
                                     "would be a consideration", "is another consideration",
                                     "is in the differential") else
          "BIDIRECTIONAL" if _literal in ("versus", "vs") or "setting" in _literal else
          "FORWARD")
_rule("difficult to exclude", "POSSIBLE_EXISTENCE", "FORWARD", pattern=[
    {"LOWER": {"IN": ["difficult", "hard"]}}, {"LOWER": "to"},
    {"LOWER": {"IN": ["completely", "entirely", "fully"]}, "OP": "?"},
    {"LOWER": {"IN": ["exclude", "rule"]}}, {"LOWER": "out", "OP": "?"}])
_rule("not excluded", "POSSIBLE_EXISTENCE", "BACKWARD", pattern=[
    {"LOWER": {"IN": ["not", "n't"]}}, {"LOWER": {"IN": ["completely", "entirely", "fully"]},
                                        "OP": "?"},
    {"LOWER": "excluded"}])
_rule("is possible", "POSSIBLE_EXISTENCE", "BACKWARD", pattern=[
    {"LOWER": {"IN": ["is", "are"]}}, {"LOWER": "also", "OP": "?"},
    {"LOWER": {"IN": ["possible", "likely", "suspected", "questioned", "not excluded"]}}])
for _literal in ("evaluate for", "to evaluate", "assess for", "to exclude", "if", "rule out",
                 "correlation for", "correlate clinically for", "correlate for"):
    _rule(_literal, "HYPOTHETICAL", "FORWARD")
for _literal in ("no change", "no significant change", "no interval change", "no increase",
                 "no decrease", "without change", "not only", "no significant interval change"):
    _rule(_literal, "PSEUDO", "PSEUDO")
_rule("without change", "PSEUDO", "PSEUDO", pattern=[
    {"LOWER": {"IN": ["without", "no"]}}, {"LOWER": {"IN": ["significant", "substantial"]},
                                           "OP": "?"},
    {"LOWER": "interval", "OP": "?"}, {"LOWER": "change"}])
for _literal in ("which", "however", "though"):
    _rule(_literal, "TERMINATE", "TERMINATE")

#: Radiology ConText cues added to medspaCy's defaults: (literal, category, direction,
#: options of ``ConTextRule``).
CONTEXT_RULES: tuple[tuple[str, str, str, dict], ...] = tuple(_RULES)


def token_pattern(phrase: str) -> list[dict]:
    """A spaCy token pattern from the phrase syntax described in the module docstring."""
    pattern = []
    for token in phrase.split():
        optional = token.startswith("[") and token.endswith("]")
        regex = token[1:-1] if optional else token
        pattern.append({"LOWER": {"REGEX": f"^(?:{regex})$"},
                        **({"OP": "?"} if optional else {})})
    return pattern
