# ruff: noqa: N801, N815 (the stand-ins carry Qt's, CTK's and Slicer's own names)
"""Stand-ins for what the 3D Slicer application provides and pip cannot, so the module's
real widget (its ``.ui``, its panel code, its logic) runs in pytest on PySide6 offscreen.

They stand for Slicer's widgets and application, never for CXRWeakLoc's own code:

- PythonQt's ``qt`` module (PySide6's classes, through qtpy), with a ``QUiLoader`` that
  knows the stand-in widgets and applies the ``.ui``'s signal/slot connections;
- the CTK and qMRML widgets the ``.ui`` names (``ctkCollapsibleButton``,
  ``ctkSliderWidget``, ``ctkDirectoryButton``, ``qMRMLWidget``, ``qMRMLNodeComboBox``
  with its ``sortFilterProxyModel().hiddenNodeIDs``), listing the real slicer-core scene;
- ``slicer.app``, ``slicer.modules`` (the Terminologies logic is slicer-core's own),
  ``slicer.ScriptedLoadableModule``, ``slicer.i18n`` and the ``SampleData`` module;
- modal dialogs: :class:`Dialogs` records what the panel shows and answers with the
  answers a test queued (an unexpected question fails the test), and file dialogs
  return the paths a test queued.

PythonQt exposes every Qt property as an attribute (``button.text = "Apply"``) and
keeps the setters as methods; the same is done here for PySide6's classes, so the
module's code runs unchanged, and this file is written in that style too. Slicer's
MRML scene is slicer-core's (see ``slicer_scene.py``); the engine runs for real in its
own process.
"""

from __future__ import annotations

import os
import sys
import types
import unittest
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import slicer  # noqa: E402 (after the Qt platform is chosen)
import slicer.util  # noqa: E402
from qtpy import QtCore, QtGui, QtUiTools, QtWidgets  # noqa: E402
from qtpy.QtCore import Property, Signal  # noqa: E402

__all__ = ["Dialogs", "FileDialog", "application", "start_app", "stop_app", "translator"]

_MRML_EVENTS = ("NodeAddedEvent", "NodeRemovedEvent", "EndCloseEvent", "EndImportEvent")
#: slicer.util's own dialog functions while the recording ones stand in.
_SLICER_DIALOGS: dict[str, Callable] = {}


def _pythonqt_properties() -> None:
    """Every Qt property of PySide6's QObject classes as an attribute, as PythonQt has it
    (``button.text = "Apply"``, ``combo.currentData``); setters stay methods."""

    def attribute(name: str) -> property:
        return property(lambda self: self.property(name),
                        lambda self, value: self.setProperty(name, value))

    for source in (QtCore, QtGui, QtWidgets):
        for value in vars(source).values():
            if isinstance(value, type) and issubclass(value, QtCore.QObject):
                meta = value.staticMetaObject
                for index in range(meta.propertyOffset(), meta.propertyCount()):
                    name = meta.property(index).name()
                    setattr(value, name, attribute(name))


# --- CTK and qMRML widgets ------------------------------------------------------------


class qMRMLWidget(QtWidgets.QWidget):
    """A widget with an MRML scene, which it hands to its children (``mrmlSceneChanged``)."""

    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLSortFilterProxyModel(QtCore.QObject):
    """What qMRMLNodeComboBox filters by: here its ``hiddenNodeIDs``."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._hidden: list[str] = []

    def _getHidden(self):
        return list(self._hidden)

    def _setHidden(self, ids):
        self._hidden = list(ids)
        self.changed.emit()

    hiddenNodeIDs = Property("QStringList", _getHidden, _setHidden)


def _refreshingProperty(attribute: str, kind) -> Property:
    """A property of the combo box that lists the nodes again when set."""

    def setter(self, value):
        setattr(self, attribute, value)
        self._refresh()

    return Property(kind, lambda self: getattr(self, attribute), setter)


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    """Lists the scene's nodes of ``nodeTypes`` (exact classes unless
    ``showChildNodeTypes``) that are not hidden; with ``noneEnabled`` off (the default),
    a node is always selected when there is one, as in Slicer. ``nodeActivated`` is the
    user's pick (:meth:`choose`)."""

    currentNodeChanged = Signal(object)
    nodeActivated = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._observers, self._types = None, [], []
        self._childTypes, self._add, self._remove, self._current = True, True, True, None
        self._proxy = qMRMLSortFilterProxyModel(self)
        self._proxy.changed.connect(self._refresh)
        self.currentIndexChanged.connect(self._onIndexChanged)

    nodeTypes = _refreshingProperty("_types", "QStringList")
    showChildNodeTypes = _refreshingProperty("_childTypes", bool)
    addEnabled = _refreshingProperty("_add", bool)
    removeEnabled = _refreshingProperty("_remove", bool)

    def sortFilterProxyModel(self):
        return self._proxy

    def setMRMLScene(self, scene):
        for observed, tag in self._observers:
            observed.RemoveObserver(tag)
        self._scene = scene
        self._observers = [(scene, scene.AddObserver(getattr(scene, event), self._refresh))
                           for event in _MRML_EVENTS] if scene is not None else []
        observers = list(self._observers)  # removed when the widget goes, as in Slicer
        self.destroyed.connect(lambda *args: [o.RemoveObserver(tag) for o, tag in observers])
        self._refresh()

    def _nodes(self):
        if self._scene is None:
            return []
        nodes = []
        for nodeType in self._types:
            found = self._scene.GetNodesByClass(nodeType)
            nodes += [found.GetItemAsObject(i) for i in range(found.GetNumberOfItems())]
        return [n for n in nodes if (self._childTypes or n.GetClassName() in self._types)
                and not n.GetHideFromEditors() and n.GetID() not in self._proxy._hidden]

    def _refresh(self, *args):
        nodes = self._nodes()
        current = self._current if self._current in [n.GetID() for n in nodes] else None
        self.blockSignals(True)
        self.clear()
        for node in nodes:
            self.addItem(node.GetName(), node.GetID())
        if current is None and nodes:
            current = nodes[0].GetID()
        self.setCurrentIndex(self.findData(current) if current else -1)
        self.blockSignals(False)
        self._select(current)

    def _onIndexChanged(self, index):
        self._select(self.itemData(index) if index >= 0 else None)

    def _select(self, nodeId):
        if nodeId != self._current:
            self._current = nodeId
            self.currentNodeChanged.emit(self.currentNode())

    def currentNode(self):
        return self._scene.GetNodeByID(self._current) if self._current else None

    def setCurrentNode(self, node):
        self._refresh()
        self.setCurrentIndex(self.findData(node.GetID()) if node is not None else -1)

    def choose(self, node):
        """What the user picking ``node`` in the list does."""
        self.setCurrentNode(node)
        self.nodeActivated.emit(node)


class ctkCollapsibleButton(QtWidgets.QGroupBox):
    """A titled section whose contents hide when ``collapsed``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapsed = False

    def _setText(self, text):
        self.setTitle(text)

    def _setCollapsed(self, collapsed):
        self._collapsed = bool(collapsed)
        self._showContents()

    def _showContents(self):
        for child in self.children():
            if isinstance(child, QtWidgets.QWidget):
                child.setVisible(not self._collapsed)

    def showEvent(self, event):  # the .ui sets ``collapsed`` before adding the contents
        self._showContents()
        super().showEvent(event)

    text = Property(str, lambda self: self.title, _setText)
    collapsed = Property(bool, lambda self: self._collapsed, _setCollapsed)


class ctkSliderWidget(QtWidgets.QWidget):
    """A slider and a spin box showing one float value (the spin box holds it)."""

    valueChanged = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._slider = QtWidgets.QSlider(QtCore.Qt.Horizontal, self)
        self._spin = QtWidgets.QDoubleSpinBox(self)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._slider)
        layout.addWidget(self._spin)
        self._slider.setRange(0, 1000)
        self._slider.valueChanged.connect(self._fromSlider)
        self._spin.valueChanged.connect(self._fromSpin)

    def _fromSlider(self, position):
        spin = self._spin
        spin.setValue(spin.minimum + position / 1000 * (spin.maximum - spin.minimum))

    def _fromSpin(self, value):
        spin, span = self._spin, self._spin.maximum - self._spin.minimum
        self._slider.blockSignals(True)
        self._slider.setValue(round((value - spin.minimum) / span * 1000) if span else 0)
        self._slider.blockSignals(False)
        self.valueChanged.emit(value)

    value = Property(float, lambda self: self._spin.value, lambda self, v: self._spin.setValue(v))
    minimum = Property(float, lambda self: self._spin.minimum,
                       lambda self, v: self._spin.setMinimum(v))
    maximum = Property(float, lambda self: self._spin.maximum,
                       lambda self, v: self._spin.setMaximum(v))
    singleStep = Property(float, lambda self: self._spin.singleStep,
                          lambda self, v: self._spin.setSingleStep(v))


class ctkDirectoryButton(QtWidgets.QPushButton):
    """A button showing a folder (the working folder until one is chosen)."""

    directoryChanged = Signal(str)
    directorySelected = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._directory = ""
        self._setDirectory(os.getcwd())

    def _setDirectory(self, folder):
        if folder != self._directory:
            self._directory = folder
            self.setText(folder)
            self.directoryChanged.emit(folder)

    directory = Property(str, lambda self: self._directory, _setDirectory)

    def choose(self, folder):
        """What the user picking ``folder`` in the button's dialog does."""
        self._setDirectory(str(folder))
        self.directorySelected.emit(str(folder))


STANDIN_WIDGETS = (qMRMLWidget, qMRMLNodeComboBox, ctkCollapsibleButton, ctkSliderWidget,
                   ctkDirectoryButton)


class UiLoader(QtUiTools.QUiLoader):
    """QUiLoader knowing the stand-in widgets; it makes the ``.ui``'s connections itself,
    by signal and slot name (Qt's own need the C++ signatures, e.g. ``vtkMRMLScene*``)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        for widget in STANDIN_WIDGETS:
            self.registerCustomWidget(widget)

    def load(self, device, parent=None):
        tree = ElementTree.fromstring(bytes(device.readAll()))
        connections = tree.find("connections")
        if connections is not None:
            tree.remove(connections)
        buffer = QtCore.QBuffer()
        buffer.setData(ElementTree.tostring(tree))
        buffer.open(QtCore.QIODevice.ReadOnly)
        root = super().load(buffer, parent)
        for connection in [] if connections is None else connections:
            sender, receiver = (root if root.objectName == name
                                else root.findChild(QtCore.QObject, name)
                                for name in (connection.findtext("sender"),
                                             connection.findtext("receiver")))
            signal, slot = (connection.findtext(key).split("(")[0] for key in ("signal", "slot"))
            getattr(sender, signal).connect(getattr(receiver, slot))
        return root


# --- dialogs ------------------------------------------------------------------------


class Dialogs:
    """Modal dialogs: records each (kind, text) and answers questions from ``answers``."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []
        self.answers: list[bool] = []

    def _question(self, kind: str) -> Callable[..., bool]:
        def ask(text, *args, **kwargs) -> bool:
            self.shown.append((kind, text))
            if not self.answers:
                raise AssertionError(f"unexpected question: {text}")
            return self.answers.pop(0)
        return ask

    def _message(self, kind: str) -> Callable[..., None]:
        return lambda text, *args, **kwargs: self.shown.append((kind, text))

    def texts(self, kind: str) -> list[str]:
        return [text for shown, text in self.shown if shown == kind]

    def install(self) -> None:
        """Put these dialogs in ``slicer.util`` (:func:`stop_app` puts Slicer's back)."""
        replacements = {
            "errorDisplay": self._message("error"), "infoDisplay": self._message("info"),
            "warningDisplay": self._message("warning"), "delayDisplay": self._message("delay"),
            "confirmOkCancelDisplay": self._question("confirm"),
            "confirmYesNoDisplay": self._question("yes/no")}
        for name, dialog in replacements.items():
            _SLICER_DIALOGS.setdefault(name, getattr(slicer.util, name))
            setattr(slicer.util, name, dialog)


class FileDialog(QtWidgets.QFileDialog):
    """File dialogs answer with the paths queued in ``answers`` (PythonQt returns a str)."""

    answers: list[str] = []

    @classmethod
    def _answer(cls, *args, **kwargs) -> str:
        return str(cls.answers.pop(0)) if cls.answers else ""

    getSaveFileName = _answer
    getExistingDirectory = _answer
    getOpenFileName = _answer


# --- slicer.app, slicer.modules, ScriptedLoadableModule, i18n, SampleData ---------------


class Application(QtCore.QObject):
    """``slicer.app``: start-up signal, cursors, testing flag, restart requests."""

    startupCompleted = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.restarts = 0

    def testingEnabled(self) -> bool:
        return False  # dialogs are shown (and recorded), as in an interactive session

    def startupEnvironment(self):
        return QtCore.QProcessEnvironment.systemEnvironment()

    def processEvents(self) -> None:
        QtWidgets.QApplication.processEvents()

    def setOverrideCursor(self, cursor) -> None:
        QtWidgets.QApplication.setOverrideCursor(cursor)

    def restoreOverrideCursor(self) -> None:
        QtWidgets.QApplication.restoreOverrideCursor()

    def layoutManager(self):
        return None  # no views offscreen

    def restart(self) -> None:
        self.restarts += 1


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__.removesuffix("Logic")


class ScriptedLoadableModuleWidget:
    """Slicer's behaviour: without a parent, a top-level widget is made and ``setup()``
    runs at once; ``resourcePath`` is the module's ``Resources`` folder."""

    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__.removesuffix("Widget")
        if not parent:
            self.parent = qMRMLWidget()
            self.parent.setLayout(QtWidgets.QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if not parent:
            self.setup()
            self.parent.show()

    def resourcePath(self, filename: str) -> str:
        return str(Path(sys.modules[self.__module__].__file__).parent / "Resources" / filename)

    def setup(self) -> None:
        pass


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):
        slicer.util.delayDisplay(message)


class _Translator:
    """``slicer.i18n``: identity, or ``language(text)`` when a test sets one."""

    language: Callable[[str], str] | None = None

    @classmethod
    def tr(cls, text: str) -> str:
        return cls.language(text) if cls.language else text

    @classmethod
    def translate(cls, context: str, text: str) -> str:
        return cls.tr(text)


class SampleDataLogic:
    """``SampleData.SampleDataLogic``'s registration, into ``slicer.modules`` as Slicer keeps it."""

    @staticmethod
    def registerCustomSampleDataCategory(category, title):
        slicer.modules.sampleDataSourceCategories.setdefault(category, {})["title"] = title

    @staticmethod
    def registerCustomSampleDataSource(category="Custom", **source):
        sources = slicer.modules.sampleDataSources.setdefault(category, [])
        if all(vars(known) != source for known in sources):  # registered once, as in Slicer
            sources.append(types.SimpleNamespace(**source))


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def _install_modules() -> None:
    qtNames = {name: getattr(source, name) for source in (QtCore, QtGui, QtWidgets)
               for name in dir(source) if name.startswith("Q")}
    _module("qt", **{**qtNames, "QUiLoader": UiLoader, "QFileDialog": FileDialog})
    _module("ctk", **{w.__name__: w for w in STANDIN_WIDGETS if w.__name__.startswith("ctk")})
    slicer.qMRMLWidget, slicer.qMRMLNodeComboBox = qMRMLWidget, qMRMLNodeComboBox
    slicer.ScriptedLoadableModule = _module(
        "slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
        ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleTest=ScriptedLoadableModuleTest)
    slicer.i18n = _module("slicer.i18n", tr=_Translator.tr, translate=_Translator.translate)
    _module("SampleData", SampleDataLogic=SampleDataLogic)
    slicer.util.childWidgetVariables = _childWidgetVariables


def _childWidgetVariables(widget):
    """``slicer.util.childWidgetVariables``: named children as attributes (PythonQt calls
    ``objectName`` ``name``)."""
    names = {child.objectName: child for child in widget.findChildren(QtCore.QObject)}
    return types.SimpleNamespace(**{name: child for name, child in names.items() if name})


_pythonqt_properties()
_install_modules()
translator = _Translator
_application: QtWidgets.QApplication | None = None


def application(settings: Path) -> QtWidgets.QApplication:
    """The QApplication (made once); QSettings go to an INI file under ``settings``."""
    global _application
    if _application is None:
        _application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
        QtCore.QCoreApplication.setOrganizationName("CXRWeakLocTests")
        QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
    QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope, str(settings))
    return _application


def start_app(terminologies) -> tuple[Application, Dialogs]:
    """``slicer.app`` and ``slicer.modules`` for one test module; dialogs recorded."""
    slicer.app = Application()
    slicer.modules = types.SimpleNamespace(
        terminologies=types.SimpleNamespace(logic=lambda: terminologies),
        sampleDataSources={}, sampleDataSourceCategories={})
    dialogs = Dialogs()
    dialogs.install()
    FileDialog.answers = []
    return slicer.app, dialogs


def stop_app() -> None:
    """Remove ``slicer.app`` and ``slicer.modules``, and put slicer.util's dialogs back
    (logic tests run without them)."""
    for name in ("app", "modules"):
        if hasattr(slicer, name):
            delattr(slicer, name)
    for name, dialog in _SLICER_DIALOGS.items():
        setattr(slicer.util, name, dialog)
