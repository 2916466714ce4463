"""The review app: one page with the queue, Slicer's slice view and Segment Editor, the
findings table and the exports, served by trame from one MRML scene.

The scene is trame-slicer's; what happens in it is the Slicer module's logic
(``CXRWeakLocModuleLib``): reading the radiograph, importing the engine's results,
re-thresholding with the card's rule, tracking edits (SEMIAUTOMATIC), letting findings
overlap in the Segment Editor, and the ``.seg.nrrd``/DICOM-SEG exports. Inputs given on
the command line are localised by the engine in its own process, as the Slicer module
runs it. The page makes no request outside this server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import sys
import time

import numpy as np
import slicer
from CXRWeakLocModuleLib import ENGINE_ROOT, mrml
from CXRWeakLocModuleLib.logic import LocalizationLogic
from trame.app import get_server
from trame_server.utils.asynchronous import create_task
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic import SegmentEditorLogic
from trame_slicer.app.ui import create_vertical_view_gutter_ui
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from vtkmodules.vtkCommonCore import vtkCommand

from CXRWeakLocLib.core.errors import CXRWeakLocError

from .access import token_middleware
from .localising import LocalisingJob
from .page import build_page
from .studies import EDITED, REVIEWED, TO_REVIEW, ReviewQueue, Study

__all__ = ["ReviewApp"]

logger = logging.getLogger(__name__)

ICON = ENGINE_ROOT / "CXRWeakLoc" / "Resources" / "Icons" / "CXRWeakLoc.png"
LAYOUT = "Radiograph"


class ReviewApp:
    """The page and its handlers; ``queue`` is the results folder being reviewed."""

    def __init__(self, queue: ReviewQueue, job: LocalisingJob | None = None,
                 autosave_seconds: float = 10.0, server=None) -> None:
        self.queue, self.job, self.autosave_seconds = queue, job, autosave_seconds
        self.server = server or get_server(client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.state = self.server.state
        self.slicer_app = SlicerApp()
        slicer.mrmlScene = self.slicer_app.scene  # the module's logic works on slicer.mrmlScene
        self.editor = self.slicer_app.segmentation_editor
        register_rca_factories(self.slicer_app.view_manager, self.server,
                               slice_view_ui_f=create_vertical_view_gutter_ui)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager,
                                            self.server)
        self.layout_manager.register_layout(
            LAYOUT, Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.axial_view()]))
        self.layout_manager.set_layout(LAYOUT)
        for view in self.slicer_app.view_manager.get_slice_views():
            # the page gives the view its size when it opens: fit the radiograph to it then
            view.interactor().AddObserver(vtkCommand.WindowResizeEvent,
                                          lambda *_, view=view: view.fit_view_to_content())
        self.editor_logic = SegmentEditorLogic(self.server, self.slicer_app)
        self.logic = LocalizationLogic(onLog=self._message)
        self.study: Study | None = None
        self._nodes: list = []
        self._saved = ""  # fingerprint of what was last saved
        self._initial_state()
        build_page(self)
        self.editor.active_segment_id_changed.connect(self._on_active_segment)
        self.editor.segmentation_modified.connect(self._on_segmentation_modified)
        self.server.controller.on_server_ready.add(self._on_ready)
        self.server.controller.on_server_exited.add(self._on_exit)

    # --- the page -----------------------------------------------------------------------

    def _initial_state(self) -> None:
        state = self.state
        state.trame__title = "CXRWeakLoc review"
        if ICON.is_file():  # (a source tree; inline, so the page asks nothing more for it)
            state.trame__favicon = "data:image/png;base64," + base64.b64encode(
                ICON.read_bytes()).decode()
        state.update({
            "cxr_studies": [], "cxr_current": -1, "cxr_progress": "", "cxr_ready": False,
            "cxr_findings": [], "cxr_selected": "", "cxr_message": "", "cxr_saved": "",
            "cxr_engine": {"running": False, "text": "", "percent": 0, "error": ""},
            "cxr_opacity": 0.4, "cxr_threshold": 0.0, "cxr_rule": {
                "low": 0.0, "high": 1.0, "step": 0.01, "measured": 0.0, "adjustable": False,
                "hint": ""},
            "cxr_window": 1.0, "cxr_level": 0.5, "cxr_range": [0.0, 1.0],
        })
        state.change("cxr_threshold")(self._on_threshold)
        state.change("cxr_opacity")(self._on_opacity)
        state.change("cxr_window", "cxr_level")(self._on_window_level)

    # --- life cycle ---------------------------------------------------------------------

    def start(self, host: str, port: int, token: str | None = None) -> None:
        """Serve until interrupted; with ``token``, every request must carry it."""
        if token:
            self.server.controller.on_server_bind.add(
                lambda web: web.app.middlewares.append(token_middleware(token)))
        # trame also reads its options from sys.argv: it gets them here, not from ours
        argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            self.server.start(host=host, port=port, open_browser=False,
                              show_connection_info=False, timeout=0)
        finally:
            sys.argv = argv

    def _on_ready(self, **_) -> None:
        with self.state:
            self._refresh_queue()
            self._open_first()
        create_task(self._autosave_loop())
        if self.job is not None:
            self.job.process.start()
            create_task(self._engine_loop())

    def _on_exit(self, **_) -> None:
        """Save the open study; stop the engine (a restart resumes where it was)."""
        self.save()
        if self.job is not None:
            self.job.process.cancel()

    async def _autosave_loop(self) -> None:
        while True:
            await asyncio.sleep(self.autosave_seconds)
            try:
                with self.state:
                    self.save()
            except Exception:  # a bug, not the user's: log it and keep saving
                logger.exception("autosave failed")

    async def _engine_loop(self) -> None:
        job, seen = self.job, 0.0
        while not job.poll():
            with self.state:
                self.state.cxr_engine = {
                    "running": True, "percent": round(job.fraction * 100), "error": "",
                    "text": f"Localising {job.count} input(s): {job.stage or 'loading the model'}"}
                if time.monotonic() - seen > 2.0:  # results appear one by one
                    seen = time.monotonic()
                    self._refresh_queue()
                    self._open_first()
            await asyncio.sleep(0.5)
        with self.state:
            self.state.cxr_engine = {"running": False, "text": "", "percent": 100,
                                     "error": job.error}
            self._refresh_queue()
            self._open_first()

    # --- the queue ----------------------------------------------------------------------

    def _refresh_queue(self) -> None:
        current = self.study.stem if self.study else None
        studies = self.queue.refresh()
        for index, study in enumerate(studies):
            if study.stem == current:
                studies[index] = self.study  # the open one is the app's (unsaved status)
        self._publish_queue()

    def _publish_queue(self) -> None:
        studies = self.queue.studies
        self.state.cxr_studies = [{"stem": s.stem, "status": s.status, "error": s.error}
                                  for s in studies]
        self.state.cxr_current = studies.index(self.study) if self.study in studies else -1
        done, total = self.queue.progress()
        self.state.cxr_progress = f"{done} of {total} reviewed"

    def _open_first(self) -> None:
        """Open the first study to review (or the first study) when none is open."""
        if self.study is None:
            studies = [s for s in self.queue.studies if not s.failed]
            first = next((s for s in studies if s.status == TO_REVIEW), None) or next(
                iter(studies), None)
            if first is not None:
                self._open(first)
        self.state.cxr_ready = self.study is not None or not (
            self.job and self.job.code is None)

    def open_study(self, index: int) -> None:
        if self.save():
            self._open(self.queue.studies[index])

    def next_study(self) -> None:
        """Save, mark the study reviewed, and open the next one."""
        if self.save(REVIEWED):
            self._step(+1)

    def previous_study(self) -> None:
        if self.save():
            self._step(-1)

    def _step(self, direction: int) -> None:
        studies = self.queue.studies
        index = studies.index(self.study) + direction
        while 0 <= index < len(studies) and studies[index].failed:
            index += direction
        if 0 <= index < len(studies):
            self._open(studies[index])
        else:
            self._message("This is the last study." if direction > 0 else "First study.")
            self._publish_queue()

    def _open(self, study: Study) -> None:
        self._close()
        self.study = study
        logic = self.logic
        try:
            volume = logic.loadRadiograph(self.queue.input_file(study), study.stem)
            self._nodes.append(volume)
            saved = self.queue.segmentation_file(study.stem)
            logic.importResult(volume, study.folder, saved if saved.is_file() else None)
            self._nodes += [logic.segmentation, *(row.heatmap for row in logic.findings)]
            if study.threshold is not None and logic.segmentation is not None:
                logic.setMaskRuleValue(study.threshold)
        except (CXRWeakLocError, RuntimeError, OSError) as error:
            logger.warning("cannot open %s: %s", study.stem, error)
            self._message(f"Cannot open {study.stem}: {error}")
            self._close()
            self.study = study
            self._publish_queue()
            return
        if logic.segmentation is not None:  # the scene's only segmentation: the editor's
            self.editor_logic.on_volume_changed(volume)
        else:
            self.editor.clear()
            slicer.util.setSliceViewerLayers(background=volume, foreground=None)
        self._show_window_level(volume)
        for view in self.slicer_app.view_manager.get_slice_views():
            view.fit_view_to_content()
        self._saved = self._fingerprint()
        self._publish_rule()
        self._publish_queue()
        if logic.findings:
            self.select_finding(logic.findings[0].name)
        else:
            self._publish_findings()
            self._message("No finding above its threshold in this study.")

    def _close(self) -> None:
        """Forget the open study and remove its nodes from the scene."""
        self.editor.deactivate_effect()
        self.logic.clearResults()
        for node in self._nodes:
            if node is not None and node.GetScene() is not None:
                self.slicer_app.scene.RemoveNode(node)
        self._nodes, self.study = [], None
        self.state.cxr_findings, self.state.cxr_selected = [], ""

    # --- saving -------------------------------------------------------------------------

    def _edited(self) -> bool:
        content = self.logic.segmentation.GetSegmentation() if self.logic.segmentation else None
        return content is not None and any(
            mrml.segmentTag(content.GetSegment(row.segment_id), mrml.ALGORITHM_TYPE_TAG)
            == "SEMIAUTOMATIC" for row in self.logic.findings)

    def _fingerprint(self) -> str:
        """What a save writes: the masks, their tags and the threshold."""
        logic = self.logic
        digest = hashlib.sha1(repr(logic.parameters.threshold).encode())
        if logic.segmentation is not None:
            content = logic.segmentation.GetSegmentation()
            for row in logic.findings:
                mask = mrml.segmentMask(logic.segmentation, row.segment_id, logic.inputVolume)
                digest.update(np.packbits(mask).tobytes())
                digest.update(mrml.segmentTag(content.GetSegment(row.segment_id),
                                              mrml.ALGORITHM_TYPE_TAG).encode())
        return digest.hexdigest()

    def save(self, status: str | None = None) -> bool:
        """Write the open study's masks (``.seg.nrrd``, DICOM-SEG for DICOM inputs) and its
        status when anything changed; False (and a message) when writing failed."""
        study, logic = self.study, self.logic
        if study is None or study.failed or logic.inputVolume is None:
            return True
        edited = self._edited()
        status = EDITED if edited else status or (
            TO_REVIEW if study.status == EDITED else study.status)
        fingerprint = self._fingerprint()
        if fingerprint == self._saved and status == study.status:
            return True
        try:
            if logic.segmentation is not None:
                self.queue.review_folder(study.stem).mkdir(parents=True, exist_ok=True)
                logic.exportSegmentation(self.queue.segmentation_file(study.stem))
                if logic.canExportDicomSeg():
                    logic.exportDicomSeg(self.queue.dicom_seg_file(study.stem))
            threshold = logic.parameters.threshold
            study.status, study.threshold = status, threshold
            self.queue.save_status(study)
        except (CXRWeakLocError, RuntimeError, OSError) as error:
            logger.error("saving %s failed: %s", study.stem, error)
            self._message(f"Saving {study.stem} failed: {error}")
            return False
        self._saved = fingerprint
        self.state.cxr_saved = f"Saved {time.strftime('%H:%M:%S')}"
        self._publish_queue()
        return True

    # --- reviewing ----------------------------------------------------------------------

    def _message(self, line: str) -> None:
        self.state.cxr_message = line

    def _publish_findings(self) -> None:
        content = self.logic.segmentation.GetSegmentation() if self.logic.segmentation else None
        self.state.cxr_findings = [{
            "name": row.name, "probability": f"{row.probability:.3f}", "area": row.areaText,
            "edited": mrml.segmentTag(content.GetSegment(row.segment_id),
                                      mrml.ALGORITHM_TYPE_TAG) == "SEMIAUTOMATIC",
        } for row in self.logic.findings]

    def _publish_rule(self) -> None:
        rule = self.logic.maskRule
        if rule is None:
            return
        kind = rule.kind
        self.state.cxr_rule = {
            "low": kind.low, "high": kind.high, "step": (kind.high - kind.low) / 100,
            "measured": rule.value, "adjustable": kind.adjustable and bool(self.logic.findings),
            "hint": f"{rule.name}: a larger value makes "
                    f"{'smaller' if kind.larger_value_shrinks_mask else 'larger'} masks",
        }
        self.state.cxr_threshold = self.logic.parameters.threshold

    def select_finding(self, name: str) -> None:
        """Show a finding's heatmap and mask, and make it the segment the editor edits."""
        self.logic.showFinding(name, self.state.cxr_opacity)
        self.state.cxr_selected = name
        segment_id = self.logic.finding(name).segment_id
        if self.editor.active_segment_id != segment_id:
            self.editor.set_active_segment_id(segment_id)
        self._publish_findings()

    def _on_active_segment(self, segment_id: str) -> None:
        """The editor's segment list chose a segment: select its finding."""
        row = next((r for r in self.logic.findings if r.segment_id == segment_id), None)
        if row is not None and row.name != self.state.cxr_selected:
            self.select_finding(row.name)

    def _on_segmentation_modified(self) -> None:
        if self.logic.segmentation is not None and self.logic.findings:
            self.logic.measure()
            self._publish_findings()

    def _on_threshold(self, cxr_threshold, **_) -> None:
        logic = self.logic
        if logic.segmentation is None or cxr_threshold == logic.parameters.threshold:
            return
        kept = logic.setMaskRuleValue(float(cxr_threshold))
        if self.editor.undo_stack is not None:
            self.editor.undo_stack.clear()  # its states hold masks of the old threshold
        self._message(f"Kept the hand-edited masks of {', '.join(kept)}." if kept else "")
        self._publish_findings()

    def measured_threshold(self) -> None:
        """The threshold back at the card's value (the one the model was measured with)."""
        if self.logic.maskRule is not None:
            self.state.cxr_threshold = self.logic.maskRule.value

    def _on_opacity(self, cxr_opacity, **_) -> None:
        if self.logic.inputVolume is not None:
            self.logic.setHeatmapOpacity(float(cxr_opacity))

    def _show_window_level(self, volume) -> None:
        pixels = slicer.util.arrayFromVolume(volume)
        low, high = (float(v) for v in np.percentile(pixels, [0.5, 99.5]))
        self.state.cxr_range = [float(pixels.min()), float(pixels.max())]
        self.state.cxr_window, self.state.cxr_level = max(high - low, 1.0), (low + high) / 2
        self._on_window_level(self.state.cxr_window, self.state.cxr_level)

    def _on_window_level(self, cxr_window=None, cxr_level=None, **_) -> None:
        volume = self.logic.inputVolume
        if volume is not None:
            display = volume.GetDisplayNode()
            display.AutoWindowLevelOff()
            display.SetWindowLevel(float(self.state.cxr_window), float(self.state.cxr_level))
