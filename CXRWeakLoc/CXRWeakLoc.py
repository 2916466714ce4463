"""CXRWeakLoc: weakly-supervised localisation of chest X-ray findings in 3D Slicer.

The module file stays thin: the panel, the logic and the installer live in
``CXRWeakLocModuleLib`` (the logic runs without Qt, tested with slicer-core), the engine
in ``CXRWeakLocLib`` (no Slicer at all, run in its own process).
"""

from __future__ import annotations

import unittest

import slicer
from CXRWeakLocModuleLib import catalog, registration
from CXRWeakLocModuleLib.dependencies import Dependencies
from CXRWeakLocModuleLib.i18n import tr as _
from CXRWeakLocModuleLib.i18n import translate
from CXRWeakLocModuleLib.logic import LocalizationLogic, State
from CXRWeakLocModuleLib.widget import Panel
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class CXRWeakLoc(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CXR Weak Localization")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["CXRWeakLoc developers"]
        self.parent.helpText = _("""
Localises findings on a chest radiograph with a weakly-supervised model (CAM, Grad-CAM):
a heatmap and an editable mask per finding, exported as .seg.nrrd or DICOM-SEG.
Research use only; not for diagnosis.
""")
        self.parent.acknowledgementText = _("""
Built on PyTorch, MONAI, highdicom and slicerio. Models trained on NIH ChestX-ray14.
""")
        slicer.app.startupCompleted.connect(onStartupCompleted)


def onStartupCompleted():
    """Register the findings terminology and the sample radiograph with Slicer."""
    import SampleData

    registration.registerTerminology(slicer.modules.terminologies.logic())
    registration.registerSampleData(SampleData.SampleDataLogic)


class CXRWeakLocLogic(ScriptedLoadableModuleLogic, LocalizationLogic):
    """The module logic (see ``CXRWeakLocModuleLib.logic``); usable without the widget."""

    def __init__(self, **options):
        ScriptedLoadableModuleLogic.__init__(self)
        LocalizationLogic.__init__(self, **options)


class CXRWeakLocWidget(ScriptedLoadableModuleWidget):
    """The module panel; ``logic`` and ``dependencies`` may be given (scripts and tests)."""

    def __init__(self, parent=None, logic=None, dependencies=None):
        self.logic, self.dependencies, self.panel = logic, dependencies, None
        ScriptedLoadableModuleWidget.__init__(self, parent)  # calls setup() without a parent

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CXRWeakLoc.ui"))
        self.layout.addWidget(uiWidget)
        self.logic = self.logic or CXRWeakLocLogic()
        self.panel = Panel(uiWidget, self.logic, self.dependencies or Dependencies())

    def cleanup(self):
        if self.panel is not None:
            self.panel.cleanup()


class CXRWeakLocTest(ScriptedLoadableModuleTest):
    """Self-test in the Slicer application: a synthetic radiograph through a shipped model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_localize_and_rethreshold()

    def test_localize_and_rethreshold(self):
        models = catalog.findModels()
        if not models:
            raise unittest.SkipTest("no model installed")
        Dependencies().ensure(lambda question: True)
        logic = CXRWeakLocLogic()
        try:
            volume = logic.loadSample()
            logic.start(volume, str(models[0].folder), "all", "cpu")
            self.assertEqual(logic.wait(timeout=600), State.FINISHED, logic.error)
            self.assertEqual(len(logic.findings),
                             logic.segmentation.GetSegmentation().GetNumberOfSegments())
            rule = logic.maskRule
            if rule.kind.adjustable:  # half-way to the end of the range that shrinks masks
                kind = rule.kind
                end = kind.high if kind.larger_value_shrinks_mask else kind.low
                before = sum(row.area_px for row in logic.findings)
                logic.setMaskRuleValue((rule.value + end) / 2)
                self.assertLessEqual(sum(row.area_px for row in logic.findings), before)
        finally:
            logic.cleanup()
        self.delayDisplay("Test passed")
