"""The web app's parts that need no browser: the queue on disk, the command's one-line
errors. The app itself, in Chromium, is tested in test_app_browser.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

from CXRWeakLocLib.core.errors import CXRWeakLocError


def _result(folder, stem: str) -> None:
    (folder / stem).mkdir(parents=True)
    (folder / stem / "findings.json").write_text("{}")


def test_the_queue_reads_results_statuses_and_failed_inputs(tmp_path):
    from CXRWeakLocApp.studies import EDITED, REVIEWED, TO_REVIEW, ReviewQueue, Study

    for stem in ("b", "a", "c"):
        _result(tmp_path, stem)
    (tmp_path / "summary.csv").write_text(
        "input,output,status,positive_findings,error\n"
        f"/in/a.png,{tmp_path / 'a'},done,,\n"
        f"/in/bad.dcm,{tmp_path / 'bad'},failed,,/in/bad.dcm: cannot be read (not DICOM)\n")
    queue = ReviewQueue(tmp_path)
    queue.save_status(Study("b", tmp_path / "b", EDITED, threshold=1.5))
    queue.save_status(Study("c", tmp_path / "c", REVIEWED))
    (queue.review_folder("a")).mkdir(parents=True)
    queue.status_file("a").write_text("{not json")  # a damaged file: the study is to review
    studies = queue.refresh()
    assert [(s.stem, s.status, s.threshold, s.error) for s in studies] == [
        ("a", TO_REVIEW, None, ""), ("b", EDITED, 1.5, ""),
        ("bad", TO_REVIEW, None, "/in/bad.dcm: cannot be read (not DICOM)"),
        ("c", REVIEWED, None, "")]
    assert studies[2].failed and not studies[0].failed
    assert queue.progress() == (2, 3)
    assert json.loads(queue.status_file("b").read_text())["status"] == EDITED
    assert not list(queue.review_folder("b").glob(".*")), "a temporary file was left"


def test_a_result_named_like_the_review_folder_is_refused(tmp_path):
    from CXRWeakLocApp.studies import REVIEW_FOLDER, ReviewQueue

    _result(tmp_path, REVIEW_FOLDER)
    with pytest.raises(CXRWeakLocError, match="rename that input") as refused:
        ReviewQueue(tmp_path)
    assert "\n" not in str(refused.value)


def test_the_input_is_found_by_its_checksum(tmp_path, monkeypatch):
    """findings.json records the input relative to where localize ran: the queue looks
    there and above the results folder, and takes only the file with the same checksum."""
    from CXRWeakLocApp.studies import ReviewQueue, Study
    from CXRWeakLocLib.core.files import sha256_of

    image = tmp_path / "scans" / "x.png"
    image.parent.mkdir()
    image.write_bytes(b"pixels")
    results = tmp_path / "results"
    record = {"format_version": 1, "model": {}, "mask_rule": {}, "findings": [],
              "input": {"path": "scans/x.png", "sha256": sha256_of(image)}}
    (results / "x").mkdir(parents=True)
    (results / "x" / "findings.json").write_text(json.dumps(record))
    queue = ReviewQueue(results)
    study = Study("x", results / "x")
    monkeypatch.chdir(results)  # not where localize ran
    assert queue.input_file(study) == tmp_path / "scans" / "x.png"
    image.write_bytes(b"other pixels")
    with pytest.raises(CXRWeakLocError, match="not found"):
        queue.input_file(study)


def test_app_without_its_extra_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['trame_slicer'] = None\n"
            "from CXRWeakLocLib.cli import main\n"
            f"sys.exit(main(['app', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cxrweakloc: error: cxrweakloc app needs the app extra: pip install "
        "'cxrweakloc[app]' (missing: trame_slicer)"]


def test_the_engine_never_imports_the_app():
    """The CLI imports CXRWeakLocApp (and so Slicer and trame) only for ``app``."""
    code = ("import sys; from CXRWeakLocLib import cli; cli.build_parser()\n"
            "print(sorted(m for m in ('CXRWeakLocApp', 'slicer', 'trame', 'trame_slicer') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True, timeout=120)
    assert done.stdout.strip() == "[]"


def test_app_refuses_what_it_cannot_serve_in_one_line(tmp_path, capsys):
    from CXRWeakLocLib.cli import main

    (tmp_path / "empty").mkdir()
    for argument, reason in ((tmp_path / "absent", "not found: "),
                             (tmp_path / "empty", "no results or radiographs in ")):
        assert main(["app", str(argument)]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"cxrweakloc: error: {reason}{argument}"]
