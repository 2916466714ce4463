"""Batch localisation: torchrun split, resume after a kill, summary, bad files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nrrd
import numpy as np
import pytest
from PIL import Image

from CXRWeakLocLib.batch import SUMMARY_FILE, RadiographFiles, localize_files
from CXRWeakLocLib.core.radiograph import read_radiograph
from CXRWeakLocLib.distributed import Shard
from CXRWeakLocLib.localize import Localizer

IMAGES = 6


def write_pngs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Small random-texture PNGs of a few sizes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        side = 64 + 16 * (index % 3)
        pixels = rng.integers(0, 256, (side, side + 8), dtype=np.uint8)
        path = folder / f"img{index:02d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pngs")
    write_pngs(folder, IMAGES)
    return folder


def cli_command(*args: str, processes: int = 1) -> list[str]:
    launcher = ([sys.executable, "-m", "torch.distributed.run",
                 "--standalone", f"--nproc_per_node={processes}"] if processes > 1
                else [sys.executable])
    return [*launcher, "-m", "CXRWeakLocLib", "localize", *args]


def cli_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(*args: str, processes: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args, processes=processes), capture_output=True,
                          text=True, env=cli_env(), timeout=300)


def summary_rows(out: Path) -> dict[str, dict]:
    with (out / SUMMARY_FILE).open(newline="") as handle:
        return {Path(row["input"]).name: row for row in csv.DictReader(handle)}


def comparable(folder: Path) -> dict:
    """findings.json without what may differ between runs, plus the segmentation voxels."""
    record = json.loads((folder / "findings.json").read_text())
    findings = {f["name"]: (f["probability"], f.get("mask_area_px"), f.get("boxes_xywh"))
                for f in record["findings"]}
    segmentation = next(folder.glob("*.seg.nrrd"), None)
    voxels = nrrd.read(str(segmentation))[0] if segmentation else None
    return {"findings": findings, "files": record["files"], "voxels": voxels}


def test_shards_cover_every_input_once():
    items = list(range(11))
    shares = [Shard(rank, 3).take(items) for rank in range(3)]
    assert sorted(sum(shares, [])) == items
    assert shares[1] == [1, 4, 7, 10]
    with pytest.raises(ValueError):
        Shard(2, 2)


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path, pngs, tiny_model):
    single, split = tmp_path / "single", tmp_path / "split"
    common = [str(pngs), "--model", str(tiny_model), "--findings", "all", "--device", "cpu",
              "--quiet", "--batch-size", "2"]
    one = run_cli(*common, "--out", str(single), "--workers", "0")
    assert one.returncode == 0, one.stderr[-2000:]
    two = run_cli(*common, "--out", str(split), "--workers", "1", processes=2)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("6 localized") == 1  # rank 0 alone reports, for every input

    assert list(summary_rows(split)) == sorted(p.name for p in pngs.glob("*.png"))
    assert {row["status"] for row in summary_rows(split).values()} == {"done"}
    assert not list(split.glob(".summary.part-*"))
    for folder in sorted(single.iterdir()):
        if not folder.is_dir():
            continue
        expected, actual = comparable(folder), comparable(split / folder.name)
        assert actual["files"] == expected["files"]
        assert actual["findings"].keys() == expected["findings"].keys()
        for name, (probability, area, boxes) in expected["findings"].items():
            assert actual["findings"][name][0] == pytest.approx(probability, abs=1e-5)
            assert actual["findings"][name][1:] == (area, boxes)
        np.testing.assert_array_equal(actual["voxels"], expected["voxels"])


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_finished_inputs(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    write_pngs(inputs, 12, seed=1)
    out = tmp_path / "out"
    args = [str(inputs), "--out", str(out), "--model", str(tiny_model), "--findings", "all",
            "--device", "cpu", "--quiet", "--batch-size", "1", "--workers", "0"]
    process = subprocess.Popen(cli_command(*args), env=cli_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while (time.time() < deadline and process.poll() is None
           and not list(out.glob("*/findings.json"))):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p.parent.name: p.parent.stat() for p in out.glob("*/findings.json")}
    assert 0 < len(finished) < 12, "the run was not killed mid-batch"
    # What a kill during export leaves: a hidden partial folder for an unfinished input.
    unfinished = next(p.stem for p in sorted(inputs.iterdir()) if p.stem not in finished)
    (out / f".{unfinished}.partial-killed").mkdir()
    (out / f".{unfinished}.partial-killed" / "findings.json").write_text("{}")

    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(finished)} input(s) already had complete results" in rerun.stdout
    for stem, before in finished.items():
        after = (out / stem).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not [p for p in out.iterdir() if ".partial" in p.name]
    rows = summary_rows(out)
    assert len(rows) == 12
    assert {name: row["status"] for name, row in rows.items()} == {
        p.name: "skipped" if p.stem in finished else "done" for p in inputs.iterdir()}
    assert json.loads((out / unfinished / "findings.json").read_text())["findings"]


def test_bad_files_are_reported_and_do_not_stop_the_batch(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    write_pngs(inputs, 3)
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (inputs / "empty.dcm").write_bytes(b"")
    localizer = Localizer.from_name(str(tiny_model), "cpu")
    report = localize_files(localizer, sorted(inputs.iterdir()), tmp_path / "out",
                            batch_size=2, progress=False, workers=2)
    statuses = {o.input.name: o.status for o in report.outcomes}
    assert statuses == {"broken.png": "failed", "empty.dcm": "failed", "img00.png": "done",
                        "img01.png": "done", "img02.png": "done"}
    rows = summary_rows(tmp_path / "out")
    assert {name: row["status"] for name, row in rows.items()} == statuses
    assert "empty file" in rows["empty.dcm"]["error"]
    assert rows["broken.png"]["error"].startswith(str(inputs / "broken.png"))


def test_unexpected_reader_error_is_an_outcome(tmp_path, tiny_model, monkeypatch):
    inputs = write_pngs(tmp_path / "in", 2)

    def read(path):
        if path.name == "img00.png":
            raise MemoryError("decoder ran out of memory")
        return read_radiograph(path)

    monkeypatch.setattr("CXRWeakLocLib.batch.read_radiograph", read)
    localizer = Localizer.from_name(str(tiny_model), "cpu")
    report = localize_files(localizer, inputs, tmp_path / "out", progress=False)
    assert [o.status for o in report.outcomes] == ["failed", "done"]
    assert "MemoryError: decoder ran out of memory" in report.outcomes[0].error


def test_reader_dataset_returns_errors_as_items(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"")
    item = RadiographFiles([tmp_path / "bad.png"])[0]
    assert item.radiograph is None
    assert item.error == f"{tmp_path / 'bad.png'}: empty file"


def test_progress_bar_names_each_stage(tmp_path, pngs, tiny_model, capsys):
    """The bar's description is the stage (the Slicer module shows it): reading,
    localising, exporting for each batch, and never "reading" after the last one."""
    localizer = Localizer.from_name(str(tiny_model), "cpu")
    localize_files(localizer, sorted(pngs.iterdir())[:3], tmp_path / "out", "Effusion",
                   batch_size=2)
    bars = capsys.readouterr().err.replace("\r", "\n").splitlines()
    stages = [line.split(":")[0] for line in bars if "%|" in line]
    changes = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert changes == ["reading", "localising", "exporting"] * 2
