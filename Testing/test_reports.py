"""Findings from report text: medspaCy rules and ConText, readers, strategies, the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, shared_path

from CXRWeakLocLib.cli import main
from CXRWeakLocLib.core.findings import CHESTXRAY14
from CXRWeakLocLib.text.extraction import FindingExtractor
from CXRWeakLocLib.text.reports import ReadFailure, Report, read_reports, split_sections
from CXRWeakLocLib.text.strategies import PHRASES, STRATEGIES, report_text
from training.reports import validate

IU_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><MedlineCitation><Article><Abstract>
<AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="INDICATION">Cough, rule out pneumonia.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract></Article></MedlineCitation>
<MeSH><major>Pleural Effusion/left/small</major></MeSH></eCitation>
"""


@pytest.fixture(scope="module")
def extractor() -> FindingExtractor:
    return FindingExtractor()


@pytest.mark.parametrize(("sentence", "expected"), [
    ("No pleural effusion.", {"Effusion": "negative"}),
    ("Cannot exclude pneumonia.", {"Pneumonia": "uncertain"}),
    ("Resolved effusion.", {"Effusion": "negative"}),
    ("The left effusion has resolved.", {"Effusion": "negative"}),
    ("Heart size is normal.", {"Cardiomegaly": "negative"}),
    ("The heart is not enlarged.", {"Cardiomegaly": "negative"}),
    ("The heart is mildly enlarged.", {"Cardiomegaly": "positive"}),
    ("Borderline heart size.", {"Cardiomegaly": "uncertain"}),
    ("Small left pleural effusion.", {"Effusion": "positive"}),
    ("Blunting of the left costophrenic angle.", {"Effusion": "positive"}),
    ("The costophrenic angles are sharp.", {"Effusion": "negative"}),
    ("No change in the small left effusion.", {"Effusion": "positive"}),
    ("History of pneumonia.", {}),
    ("If symptoms persist, evaluate for pneumonia.", {"Pneumonia": "uncertain"}),
    ("Hyperinflated lungs consistent with COPD.", {"Emphysema": "positive"}),
    ("Mild pulmonary vascular congestion.", {"Edema": "positive"}),
    ("Focal airspace disease in the right lower lobe.", {"Consolidation": "positive"}),
    ("Pulmonary vascularity is within normal limits.", {}),
    ("Small pericardial effusion. Subcutaneous emphysema.", {}),
    ("Calcified granuloma in the left upper lobe.", {}),
    ("No pneumothorax or large pleural effusion.",
     {"Effusion": "negative", "Pneumothorax": "negative"}),
])
def test_status_of_hand_written_sentences(extractor, sentence, expected):
    assert extractor.extract_text(sentence).statuses == expected


def test_only_findings_and_impression_are_read(extractor):
    text = ("INDICATION: Pneumonia? COMPARISON: Prior pneumothorax.\n"
            "FINDINGS: No pleural effusion.\nIMPRESSION: Possible small effusion.")
    findings = extractor.extract_text(text, "r1")
    assert findings.statuses == {"Effusion": "uncertain"}
    assert [section for section, _ in findings.sentences] == ["FINDINGS", "IMPRESSION"]


def test_report_status_positive_beats_uncertain_beats_negative(extractor):
    findings = extractor.extract_text(
        "No pneumothorax. Possible pneumothorax. No effusion. Possible effusion. "
        "Small right effusion.")
    assert [m.status for m in findings.mentions if m.finding == "Effusion"] == [
        "negative", "uncertain", "positive"]
    assert findings.statuses == {"Effusion": "positive", "Pneumothorax": "uncertain"}
    assert findings.rows() == [
        {"report_id": "text", "finding": "Effusion", "status": "positive"},
        {"report_id": "text", "finding": "Pneumothorax", "status": "uncertain"},
    ]


def test_severity_and_location_words_of_a_mention(extractor):
    findings = extractor.extract_text(
        "Small left pleural effusion. Atelectasis in the right lower lobe. "
        "The heart is mildly enlarged.")
    words = {m.finding: (m.severity, m.location) for m in findings.mentions}
    assert words == {"Effusion": (("small",), ("left",)),
                     "Atelectasis": ((), ("right", "lower", "lobe")),
                     "Cardiomegaly": (("mildly",), ())}


def test_rules_name_the_vocabulary_and_drop_only_existing_medspacy_cues():
    from medspacy.context import ConTextRule

    from CXRWeakLocLib.text.extraction import build_pipeline
    from CXRWeakLocLib.text.rules import DROPPED_DEFAULT_CUES, QUALIFIED, TARGETS

    names = {f.name for f in CHESTXRAY14}
    assert set(TARGETS) == set(PHRASES) == names
    assert {finding for finding, _ in QUALIFIED.values()} <= names
    context = build_pipeline().get_pipe("medspacy_context")
    defaults = {r.literal for r in ConTextRule.from_json(context.DEFAULT_RULES_FILEPATH)}
    assert not DROPPED_DEFAULT_CUES - defaults


def test_hand_labelled_sentences_stay_within_the_negation_target(extractor):
    check = validate.check_sentences(extractor)
    assert check.sentences == 100 and check.labelled >= 60
    assert check.found >= 0.9 * check.labelled
    assert check.negation_error_rate <= 0.05, check.errors


def test_hand_labelled_fixture_uses_the_vocabulary():
    names = {f.name for f in CHESTXRAY14}
    with validate.SENTENCES.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 100 and len({r["report_id"] for r in rows}) == 100
    for row in rows:
        assert validate.split_of(row["report_id"]) == "sentences"
        for finding, status in validate._labels(row["labels"]).items():
            assert finding in names and status in ("positive", "negative", "uncertain")


def test_mesh_headings_map_to_the_vocabulary():
    assert validate.mesh_findings((
        "Cardiac Shadow/enlarged/mild", "Cicatrix/pleura/apex/bilateral", "Cicatrix/lung/base",
        "Costophrenic Angle/left/blunted", "Airspace Disease/lung/base", "Calcified Granuloma",
        "Opacity/lung/lingula", "Lung/hypoinflation")) == {
        "Cardiomegaly", "Pleural_Thickening", "Fibrosis", "Effusion", "Consolidation"}


def test_extraction_needs_no_network():
    code = textwrap.dedent("""
        import socket
        def refuse(*args, **kwargs):
            raise RuntimeError("network used")
        socket.socket.connect = socket.socket.connect_ex = refuse
        socket.create_connection = socket.getaddrinfo = refuse
        from CXRWeakLocLib.text.extraction import FindingExtractor
        print(FindingExtractor().extract_text("No pleural effusion.").statuses)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "{'Effusion': 'negative'}"


# --- strategies ------------------------------------------------------------------------

FIXED_REPORT = ("FINDINGS: Mild cardiomegaly. Small left pleural effusion. Possible right "
                "lower lobe pneumonia. No pneumothorax.\nIMPRESSION: Small left effusion and "
                "mild cardiomegaly. No pneumothorax or consolidation.")


@pytest.fixture(scope="module")
def fixed(extractor):
    return extractor.extract_text(FIXED_REPORT, "fixed")


@pytest.mark.parametrize(("strategy", "expected"), [
    ("rule-based+", "Cardiomegaly, pleural effusion and possible pneumonia. "
                    "No pneumothorax or consolidation."),
    ("rule-based-", "Cardiomegaly, pleural effusion and possible pneumonia."),
    ("rule-based-v2+", "Mild cardiomegaly, small left pleural effusion and possible right "
                       "lower lobe pneumonia. No pneumothorax or consolidation."),
    ("rule-based-v2-", "Mild cardiomegaly, small left pleural effusion and possible right "
                       "lower lobe pneumonia."),
    ("impression+", "Small left effusion and mild cardiomegaly. "
                    "No pneumothorax or consolidation."),
    ("impression-", "Small left effusion and mild cardiomegaly."),
    ("inverted", "No pneumothorax, no consolidation."),
])
def test_each_fixed_strategy_on_a_fixed_report(fixed, strategy, expected):
    assert report_text(fixed, strategy) == expected


@pytest.mark.parametrize("strategy", ["randomized+", "randomized-"])
def test_randomized_is_seeded_and_keeps_the_findings(fixed, strategy):
    texts = {seed: report_text(fixed, strategy, seed) for seed in range(8)}
    assert report_text(fixed, strategy, 3) == texts[3]
    assert len(set(texts.values())) > 1
    for text in texts.values():
        lowered = text.lower()
        for finding in ("Cardiomegaly", "Effusion", "Pneumonia"):
            assert any(p in lowered for p in PHRASES[finding]), (finding, text)
        denied = [f"no {p}" for f in ("Pneumothorax", "Consolidation") for p in PHRASES[f]]
        assert any(d in lowered for d in denied) == strategy.endswith("+"), text


def test_a_report_without_findings(extractor):
    normal = extractor.extract_text("Lungs are clear. No acute disease.", "normal")
    assert {s: report_text(normal, s) for s in STRATEGIES} == {
        **{s: "No finding." for s in STRATEGIES if not s.startswith("impression")},
        "impression+": "Lungs are clear. No acute disease.",
        "impression-": "Lungs are clear. No acute disease.",
        "inverted": "",
    }


# --- readers ---------------------------------------------------------------------------

def test_sections_of_plain_text():
    assert split_sections("Heart normal.\nFINDINGS: No effusion.\nimpression: clear. "
                          "INDICATION: cough") == (
        ("TEXT", "Heart normal."), ("FINDINGS", "No effusion."),
        ("IMPRESSION", "clear."), ("INDICATION", "cough"))


def test_real_iu_xml_files():
    folder = shared_path("fixtures/iu-pairs/reports")
    reports = {r.report_id: r for r in read_reports([folder])}
    assert set(reports) == {"1", "1000", "1001", "25", "303", "54"}
    report = reports["1000"]
    assert isinstance(report, Report)
    assert [name for name, _ in report.sections] == [
        "COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION"]
    assert report.section("FINDINGS").startswith("There is XXXX increased opacity")
    assert "Pulmonary Atelectasis/upper lobe/right" in report.mesh_major
    assert [name for name, _ in report.finding_sections] == ["FINDINGS", "IMPRESSION"]


def test_the_iu_collection_archive():
    items = list(read_reports([shared_path("fixtures/reports/NLMCXR_reports.tgz")]))
    failures = [i for i in items if isinstance(i, ReadFailure)]
    assert len(items) == 3955 and len(failures) == 28
    assert all(f.message.startswith("empty report") for f in failures)


# --- command line ----------------------------------------------------------------------

def _write_inputs(folder: Path) -> list[Path]:
    folder.mkdir()
    (folder / "a.txt").write_text("FINDINGS: Small left pleural effusion. No pneumothorax.\n"
                                  "IMPRESSION: Cannot exclude pneumonia.\n")
    (folder / "2000.xml").write_text(IU_XML.format(
        findings="The heart is normal in size. Resolved effusion.",
        impression="No acute disease."))
    (folder / "table.csv").write_text("id,report\nc1,Mild cardiomegaly.\n")
    return [folder / "a.txt", folder / "2000.xml", folder / "table.csv"]


EXPECTED_ROWS = [
    {"report_id": "a", "finding": "Effusion", "status": "positive"},
    {"report_id": "a", "finding": "Pneumonia", "status": "uncertain"},
    {"report_id": "a", "finding": "Pneumothorax", "status": "negative"},
    {"report_id": "2000", "finding": "Cardiomegaly", "status": "negative"},
    {"report_id": "2000", "finding": "Effusion", "status": "negative"},
    {"report_id": "c1", "finding": "Cardiomegaly", "status": "positive"},
]


def test_cli_writes_the_long_table_as_csv_and_json(tmp_path, capsys):
    inputs = _write_inputs(tmp_path / "in")
    args = ["reports", *map(str, inputs), "--text-column", "report", "--id-column", "id",
            "--quiet"]
    assert main([*args, "--out", str(tmp_path / "f.csv"), "--strategy", "rule-based-",
                 "inverted"]) == 0
    with (tmp_path / "f.csv").open(newline="") as handle:
        assert list(csv.DictReader(handle)) == EXPECTED_ROWS
    with (tmp_path / "f.texts.csv").open(newline="") as handle:
        texts = {(r["report_id"], r["strategy"]): r["text"] for r in csv.DictReader(handle)}
    assert texts[("a", "rule-based-")] == "Pleural effusion and possible pneumonia."
    assert texts[("2000", "inverted")] == "No cardiomegaly, no pleural effusion."
    assert len(texts) == 6
    assert main([*args, "--out", str(tmp_path / "f.json"), "--json"]) == 0
    assert json.loads((tmp_path / "f.json").read_text()) == EXPECTED_ROWS
    assert "3 report(s), 0 failed; 6 finding row(s)" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*partial*"))


def test_bad_reports_get_one_line_each_and_the_batch_goes_on(tmp_path, capsys):
    _write_inputs(tmp_path / "in")
    (tmp_path / "in" / "broken.xml").write_text("<eCitation><AbstractText Label='FINDINGS'>")
    (tmp_path / "in" / "empty.txt").write_text("  \n")
    out = tmp_path / "out" / "findings.csv"
    code = main(["reports", str(tmp_path / "in"), "--out", str(out), "--text-column",
                 "report", "--id-column", "id", "--quiet"])
    assert code == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in "".join(errors)
    assert errors[0].startswith("error: ") and "broken.xml: malformed XML" in errors[0]
    assert "empty.txt: empty report" in errors[1]
    with out.open(newline="") as handle:  # a folder is read in sorted order
        rows = list(csv.DictReader(handle))
    assert [r["report_id"] for r in rows] == ["2000", "2000", "a", "a", "a", "c1"]
    assert sorted(rows, key=str) == sorted(EXPECTED_ROWS, key=str)


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "{tmp}"], "is a folder"),
    (["--out", "{tmp}/x.csv", "--strategy", "summary"], "unknown strategy summary"),
])
def test_usage_mistakes_are_one_line(tmp_path, capsys, args, message):
    report = tmp_path / "r.txt"
    report.write_text("No effusion.")
    code = main(["reports", str(report), *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_a_folder_without_reports_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["reports", str(tmp_path / "empty"), "--out", str(tmp_path / "f.csv")]) == 2
    assert "no report files" in capsys.readouterr().err
    assert not (tmp_path / "f.csv").exists()


def test_a_csv_without_the_text_column_fails_alone(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("id,body\n1,No effusion.\n")
    (tmp_path / "r.txt").write_text("No effusion.")
    out = tmp_path / "f.csv"
    assert main(["reports", str(tmp_path / "t.csv"), str(tmp_path / "r.txt"), "--out",
                 str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no column 'text' (columns: id, body; choose one with --text-column)" in err
    assert out.read_text().splitlines() == ["report_id,finding,status", "r,Effusion,negative"]


# --- text side of the text-image model ---------------------------------------------------

def test_tokenizer_trained_on_iu_reports_round_trips(tmp_path):
    from CXRWeakLocLib.text.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

    reports = [r for r in read_reports([shared_path("fixtures/reports/NLMCXR_reports.tgz")])
               if isinstance(r, Report)]
    tokenizer = train_tokenizer(text for r in reports for _, text in r.finding_sections)
    assert 2000 < tokenizer.get_vocab_size() <= 4000
    path = save_tokenizer(tokenizer, tmp_path / "model" / "tokenizer.json")
    loaded = load_tokenizer(path)
    text = "Small left pleural effusion, no pneumothorax. Heart size is normal."
    encoding = loaded.encode(text)
    assert encoding.ids == tokenizer.encode(text).ids
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]"
    assert "pneumothorax" in encoding.tokens and "[UNK]" not in encoding.tokens
    assert loaded.decode(encoding.ids) == text.lower()


def test_a_bad_tokenizer_file_is_a_one_line_error(tmp_path):
    from CXRWeakLocLib.core.errors import CheckpointError
    from CXRWeakLocLib.text.tokenizer import load_tokenizer

    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable tokenizer") as caught:
        load_tokenizer(tmp_path / "tokenizer.json")
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def small_tokenizer():
    from CXRWeakLocLib.text.tokenizer import train_tokenizer

    corpus = [report_text(FindingExtractor().extract_text(s), "rule-based+") for s in (
        "Small left pleural effusion. No pneumothorax.", "Mild cardiomegaly.",
        "Right lower lobe pneumonia.", "No focal consolidation. Heart size is normal.",
    )] * 5
    return train_tokenizer(corpus, vocab_size=200, min_frequency=1)


def test_text_encoder_ignores_padding(small_tokenizer):
    import torch

    from CXRWeakLocLib.text.encoder import TextEncoder, TextEncoderConfig
    from CXRWeakLocLib.text.tokenizer import encode_batch

    torch.manual_seed(0)
    encoder = TextEncoder(TextEncoderConfig(small_tokenizer.get_vocab_size(), width=32,
                                            layers=2, heads=2, embed_dim=16)).eval()
    ids, mask = encode_batch(small_tokenizer, ["Mild cardiomegaly.",
                                               "Small left pleural effusion. No pneumothorax."])
    assert ids.shape == mask.shape and not mask[0].all() and mask[1].all()
    alone_ids, alone_mask = encode_batch(small_tokenizer, ["Mild cardiomegaly."])
    with torch.no_grad():
        batch, alone = encoder(ids, mask), encoder(alone_ids, alone_mask)
    assert batch.shape == (2, 16)
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=1e-5)
    assert encoder.mlm_logits(ids, mask).shape == (*ids.shape, small_tokenizer.get_vocab_size())


def test_clip_loss_on_hand_built_pairs():
    import math

    import torch

    from CXRWeakLocLib.text.contrastive import LogitScale, clip_loss

    images = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # norms differ: the loss normalises
    matched = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    swapped = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    # logits [[s, 0], [0, s]]: every row and column is -log(e^s / (e^s + 1))
    assert clip_loss(images, matched, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert clip_loss(images, swapped, 1.0).item() == pytest.approx(math.log(1 + math.exp(1)))
    # texts e1 and (e1 + e2)/sqrt(2): rows and columns differ, the loss is their mean
    c = 1 / math.sqrt(2)
    texts = torch.tensor([[1.0, 0.0], [c, c]])
    rows = -math.log(math.e / (math.e + math.exp(c))) - math.log(math.exp(c) / (1 + math.exp(c)))
    columns = -math.log(math.e / (math.e + 1)) + math.log(2)
    assert clip_loss(images, texts, 1.0).item() == pytest.approx((rows + columns) / 4)
    assert LogitScale()().item() == pytest.approx(1 / 0.07)
    with pytest.raises(ValueError, match="differ in shape"):
        clip_loss(images, texts[:1], 1.0)


def test_a_few_contrastive_steps_align_texts_with_fixed_image_embeddings(small_tokenizer):
    import torch

    from CXRWeakLocLib.text.contrastive import LogitScale, clip_loss
    from CXRWeakLocLib.text.encoder import TextEncoder, TextEncoderConfig
    from CXRWeakLocLib.text.tokenizer import encode_batch

    torch.manual_seed(0)
    encoder = TextEncoder(TextEncoderConfig(small_tokenizer.get_vocab_size(), width=32,
                                            layers=2, heads=2, embed_dim=16, dropout=0.0))
    scale = LogitScale()
    ids, mask = encode_batch(small_tokenizer, [
        "Mild cardiomegaly.", "Small left pleural effusion.", "Right lower lobe pneumonia.",
        "No pneumothorax."])
    images = torch.randn(4, 16)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *scale.parameters()], lr=3e-3)
    losses = []
    for _ in range(30):
        loss = clip_loss(images, encoder(ids, mask), scale())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    with torch.no_grad():
        similarity = images @ encoder(ids, mask).T
    assert similarity.argmax(dim=1).tolist() == [0, 1, 2, 3]
