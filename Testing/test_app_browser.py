"""``cxrweakloc app`` in a real browser: Debian's Chromium driven by Playwright, the app
in its own process (real trame-slicer, slicer-core scene, engine), on free local ports.

The tests run in order on one session: inputs localised on the fly (one of them broken),
a review with heatmaps, the threshold slider and a paint stroke, the exports, then a
restart, and a server bound beyond 127.0.0.1 with its token. Every request the pages
make is recorded, and none may leave the server. With ``CXRWEAKLOC_APP_SCREENSHOT`` set to
a path, the picture of the app in review (the README's) is written there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from test_radiograph import make_dicom

CHROMIUM = Path("/usr/bin/chromium")
#: Chromium without its own background traffic (STACK.md).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion")
SCREENSHOT_ENV = "CXRWEAKLOC_APP_SCREENSHOT"

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class App:
    """``cxrweakloc app ...`` in its own process; ``url`` once it serves."""

    def __init__(self, *args: str, host: str = "127.0.0.1") -> None:
        self.port = free_port(host)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "CXRWeakLocLib", "app", *args, "--host", host,
             "--port", str(self.port), "--autosave", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 120
        while not self.url:
            assert self.process.poll() is None, "\n".join(self.lines[-20:])
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.1)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            found = re.search(r" at (http://\S+)$", line.strip())
            if found:
                self.url = found.group(1)

    def stop(self) -> None:
        """Stop it as Ctrl+C does (it saves the open study first)."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The synthetic sample as a DX DICOM with a pixel spacing, as a PNG, and a broken file."""
    from CXRWeakLocModuleLib.logic import SAMPLE_FILE
    from PIL import Image
    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("inputs")
    make_dicom(
        folder / "chest.dcm", np.asarray(Image.open(SAMPLE_FILE)),
        SOPInstanceUID=generate_uid(), PixelSpacing=[0.6, 0.6], PatientOrientation=["L", "F"],
        PatientBirthDate="", PatientSex="O", StudyDate="20260101", StudyTime="120000",
        AccessionNumber="", ReferringPhysicianName="", StudyID="1", SeriesNumber=1,
        InstanceNumber=1)
    shutil.copy(SAMPLE_FILE, folder / "plain.png")
    (folder / "broken.png").write_bytes(b"not a PNG at all")
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results") / "out"


@pytest.fixture(scope="module")
def requests() -> list[str]:
    """Every URL the pages of this module asked for."""
    return []


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str, requests: list[str]):
    """A page at ``url`` once the app says it is ready (not trame's loading splash)."""
    page = browser.new_page(viewport={"width": 1400, "height": 860})
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_selector("#cxr-ready", state="attached", timeout=60_000)
    return page


@pytest.fixture(scope="module")
def session(browser, inputs, results, requests):
    """The app localising ``inputs`` on the fly into ``results``, and a page on it."""
    app = App(str(inputs), "--out", str(results), "--model", "cam",
              "--findings", ",".join(FINDINGS))
    page = open_page(browser, app.url, requests)
    yield app, page
    page.close()
    if app.process.poll() is None:
        app.stop()


def view(page):
    return page.locator(".remote-controlled-area").first


def frame(page) -> np.ndarray:
    """The slice view as the browser shows it (RGB)."""
    from PIL import Image

    return np.asarray(Image.open(BytesIO(view(page).screenshot())).convert("RGB"), dtype=float)


def next_frame(page, action) -> None:
    """Run ``action`` and wait for the view to show a new rendering."""
    image = page.locator(".remote-controlled-area img").first
    before = image.get_attribute("src")
    action()
    page.wait_for_function("([element, src]) => element.src !== src",
                           arg=[image.element_handle(), before], timeout=20_000)
    page.wait_for_timeout(300)  # the new image decoded and painted


def rows(page) -> dict[str, list[str]]:
    """The findings table: name -> [name, probability, area]."""
    texts = [row.locator("td").all_inner_texts() for row in page.locator(".cxr-finding").all()]
    return {text[0].split(" ")[0]: text for text in texts}


def pixels(area: str) -> int:
    return int(re.match(r"(\d+) px", area).group(1))


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_queue_lists_the_studies_and_a_bad_input_on_one_line(session):
    """Inputs are localised by the engine in its process; the page shows the progress, then
    the studies, and the broken file as one line while the others go on."""
    _, page = session
    assert "Localising 3 input(s)" in page.inner_text("#cxr-engine")
    page.wait_for_selector("#cxr-engine", state="detached", timeout=120_000)
    queue = page.locator(".cxr-study")
    wait_for(lambda: queue.count() == 3, what="three queue entries")
    entries = dict(zip(["broken", "chest", "plain"], queue.all_inner_texts(), strict=True))
    assert entries["chest"].split("\n")[0] == "chest" and "to review" in entries["chest"]
    assert "plain" in entries["plain"]
    name, error, chip = entries["broken"].split("\n")  # the error is one line
    assert (name, chip) == ("broken", "failed") and "broken.png: not a PNG" in error
    assert page.inner_text("#cxr-progress") == "0 of 2 reviewed"


def test_a_findings_row_selects_its_heatmap(session):
    _, page = session
    page.locator(".cxr-study", has_text="chest").click()
    wait_for(lambda: set(rows(page)) == set(FINDINGS), what="the chest findings")
    assert all(row[2].endswith("cm²)") for row in rows(page).values())  # spacing known
    first, second = page.locator(".cxr-finding").nth(0), page.locator(".cxr-finding").nth(1)
    next_frame(page, first.click)
    before = frame(page)
    next_frame(page, second.click)
    after = frame(page)
    assert "bg-primary" in second.get_attribute("class")
    changed = np.abs(after - before).mean(axis=2) > 30
    assert changed.mean() > 0.05, f"only {changed.mean():.1%} of the view changed"
    if os.environ.get(SCREENSHOT_ENV):
        page.screenshot(path=os.environ[SCREENSHOT_ENV])


def test_the_threshold_slider_changes_the_mask_area(session):
    _, page = session
    name = page.locator(".cxr-finding.bg-primary td").first.inner_text()
    measured = rows(page)[name][2]
    thumb = page.locator("#cxr-threshold .v-slider-thumb")
    thumb.focus()
    page.keyboard.press("End")  # cam's rule (mean_plus_k_std): the largest value
    wait_for(lambda: rows(page)[name][2] != measured, what="a new mask area")
    assert pixels(rows(page)[name][2]) < pixels(measured)
    page.click("#cxr-measured")
    wait_for(lambda: rows(page)[name][2] == measured, what="the measured area back")


def test_a_paint_stroke_adds_voxels_to_that_segment_only_and_undo_takes_it_back(
        session, results):
    import slicerio

    _, page = session

    def mask(segmentation, name):
        voxels = slicerio.extract_segments(segmentation, [(name, 1)])["voxels"]
        return np.asarray(voxels)[..., 0].T > 0

    engine = slicerio.read_segmentation(str(results / "chest" / "chest.seg.nrrd"))
    others = [n for n in FINDINGS if n != "Cardiomegaly"]
    # paint where another finding is and Cardiomegaly is not
    target = (mask(engine, others[0]) | mask(engine, others[1])) & ~mask(engine, "Cardiomegaly")
    target_rows, target_columns = np.nonzero(target)
    middle = len(target_rows) // 2
    row, column = target_rows[middle], target_columns[middle]
    page.locator(".cxr-finding", has_text="Cardiomegaly").click()
    before = {name: pixels(row[2]) for name, row in rows(page).items()}
    page.locator("button:has(.mdi-brush)").first.click()  # Segment Editor: Paint
    box = view(page).bounding_box()
    height, width = target.shape
    scale = min(box["width"] / width, box["height"] / height)  # the view fits the image

    def screen(r: float, c: float) -> tuple[float, float]:
        return (box["x"] + (box["width"] - width * scale) / 2 + (c + 0.5) * scale,
                box["y"] + (box["height"] - height * scale) / 2 + (r + 0.5) * scale)

    def stroke() -> None:
        page.mouse.move(*screen(row, column - 20))
        page.mouse.down()
        page.mouse.move(*screen(row, column + 20), steps=15)
        page.mouse.up()

    stroke()
    wait_for(lambda: pixels(rows(page)["Cardiomegaly"][2]) > before["Cardiomegaly"],
             what="the painted area")
    assert "(edited)" in rows(page)["Cardiomegaly"][0]
    page.locator("button:has(.mdi-undo)").first.click()
    wait_for(lambda: pixels(rows(page)["Cardiomegaly"][2]) == before["Cardiomegaly"],
             what="the stroke undone")
    assert "(edited)" not in rows(page)["Cardiomegaly"][0]
    stroke()
    wait_for(lambda: pixels(rows(page)["Cardiomegaly"][2]) > before["Cardiomegaly"],
             what="the painted area again")
    after = {name: pixels(row[2]) for name, row in rows(page).items()}
    assert {n: a for n, a in after.items() if n != "Cardiomegaly"} == {
        n: b for n, b in before.items() if n != "Cardiomegaly"}

    def saved():
        path = results / "reviewed" / "chest" / "chest.seg.nrrd"
        return slicerio.read_segmentation(str(path)) if path.exists() else None

    status = results / "reviewed" / "chest" / "status.json"  # written last by a save

    page.click("#cxr-save")  # (or the autosave, every 3 s here)
    wait_for(lambda: status.exists() and json.loads(status.read_text())["status"] == "edited"
             and mask(saved(), "Cardiomegaly").sum() == after["Cardiomegaly"],
             what="the edit saved")
    edited = saved()
    painted = mask(edited, "Cardiomegaly") & ~mask(engine, "Cardiomegaly")
    assert painted.sum() == after["Cardiomegaly"] - before["Cardiomegaly"] > 0
    assert painted[row, column], "the stroke is not where it was drawn"
    assert (mask(edited, "Cardiomegaly") >= mask(engine, "Cardiomegaly")).all()
    assert any((painted & mask(engine, n)).any() for n in others), \
        "the stroke crossed no other finding: overlap not tested"
    for name in others:
        assert np.array_equal(mask(edited, name), mask(engine, name)), f"painting changed {name}"


def test_the_export_reads_back_with_the_edit_and_the_tags(session, results):
    """The saved .seg.nrrd (the engine's writer) and DICOM-SEG say which mask a person
    edited, with the tags the Slicer module writes."""
    import pydicom
    import slicerio

    from CXRWeakLocLib.core.findings import finding_by_name

    folder = results / "reviewed" / "chest"
    # an autosave may be writing: its files appear whole, by a rename, and nothing else stays
    wait_for(lambda: not list(folder.glob(".*")), timeout=20, what="no partial file")
    segmentation = slicerio.read_segmentation(str(folder / "chest.seg.nrrd"))
    for segment in segmentation["segments"]:
        tags = segment["tags"]
        assert tags["DICOM.SegmentAlgorithmType"] == (
            "SEMIAUTOMATIC" if segment["name"] == "Cardiomegaly" else "AUTOMATIC")
        assert tags["DICOM.SegmentAlgorithmName"] == "cam"
        assert segment["terminology"]["type"][1] == finding_by_name(segment["name"]).code.value
    assert sorted(s["name"] for s in segmentation["segments"]) == sorted(FINDINGS)
    seg = pydicom.dcmread(folder / "chest.SEG.dcm")
    assert {s.SegmentLabel: s.SegmentAlgorithmType for s in seg.SegmentSequence} == {
        name: "SEMIAUTOMATIC" if name == "Cardiomegaly" else "AUTOMATIC" for name in FINDINGS}


def test_the_status_survives_a_restart(session, browser, results, requests):
    app, page = session
    area = rows(page)["Cardiomegaly"][2]
    page.click("#cxr-next")  # saves, marks the study done, opens the next one
    wait_for(lambda: page.inner_text("#cxr-progress") == "1 of 2 reviewed", what="progress")
    assert "edited" in page.locator(".cxr-study", has_text="chest").inner_text()
    app.stop()

    again = App(str(results))  # the results folder, nothing to localise
    try:
        page = open_page(browser, again.url, requests)
        assert page.inner_text("#cxr-progress") == "1 of 2 reviewed"
        assert "edited" in page.locator(".cxr-study", has_text="chest").inner_text()
        assert "to review" in page.locator(".cxr-study", has_text="plain").inner_text()
        page.locator(".cxr-study", has_text="chest").click()
        wait_for(lambda: rows(page).get("Cardiomegaly", [""] * 3)[2] == area,
                 what="the edited area reopened")
        assert "(edited)" in rows(page)["Cardiomegaly"][0]
        page.close()
    finally:
        again.stop()


def test_beyond_loopback_every_request_needs_the_token(browser, results, requests):
    """Bound to 127.0.0.2 without --token, the app prints a token once; requests without
    it are refused, and the page opened with it works (its cookie carries the websocket)."""
    app = App(str(results), host="127.0.0.2")
    try:
        token = re.search(r"\?token=(\S+)$", app.url).group(1)
        assert sum(token in line for line in app.lines) == 1
        base = f"http://127.0.0.2:{app.port}"
        for path in ("/", "/index.html", "/ws", f"/?token={token[:-1]}"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=10)
            assert refused.value.code == 403, path
        page = open_page(browser, app.url, requests)
        assert page.inner_text("#cxr-progress") == "1 of 2 reviewed"
        page.close()
        other = browser.new_page()
        assert other.goto(base + "/index.html").status == 403
        other.close()
    finally:
        app.stop()


def test_no_request_leaves_the_server(requests):
    """The pages above asked only their own server (127.0.0.x) for anything."""
    assert len(requests) > 20
    outside = {url for url in requests
               if not re.match(r"(http://127\.0\.0\.[12]:\d+/|blob:http://127\.0\.0\.[12]:|data:)",
                               url)}
    assert outside == set()
