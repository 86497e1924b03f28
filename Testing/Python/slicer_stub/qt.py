"""Stand-in for the PythonQt ``qt`` module: timers on a test-driven event queue, QSettings in
memory, and generic widgets built from a .ui file by ``slicer.util.loadUI``."""
from __future__ import annotations

import heapq
import itertools
import time

_queue: list = []  # (due time, sequence, callback)
_sequence = itertools.count()


def processEvents() -> int:
    """Run due timer callbacks (what Qt's event loop does); returns how many ran."""
    ran = 0
    while _queue and _queue[0][0] <= time.monotonic():
        _, _, callback = heapq.heappop(_queue)
        callback()
        ran += 1
    return ran


def _schedule(msec: int, callback) -> None:
    heapq.heappush(_queue, (time.monotonic() + msec / 1000.0, next(_sequence), callback))


class Qt:
    WaitCursor = 3


class QTimer:
    """QTimer: ``singleShot`` static and single-shot instances with a ``timeout()`` signal."""

    def __init__(self) -> None:
        self._interval = 0
        self._singleShot = False
        self._slots = []
        self._generation = 0
        self._active = False

    @staticmethod
    def singleShot(msec, callback):
        _schedule(msec, callback)

    def setSingleShot(self, singleShot):
        self._singleShot = singleShot

    def setInterval(self, msec):
        self._interval = msec

    def connect(self, signal, slot):
        assert signal == "timeout()", signal
        self._slots.append(slot)

    def start(self):
        # Restarting supersedes the pending shot, as QTimer::start does.
        self._generation += 1
        generation = self._generation
        self._active = True

        def fire():
            if generation == self._generation and self._active:
                self._active = False
                for slot in list(self._slots):
                    slot()

        _schedule(self._interval, fire)

    def stop(self):
        self._active = False
        self._generation += 1

    def isActive(self):
        return self._active


class QSettings:
    """In-memory settings shared by all instances (as one settings file would be)."""

    store: dict = {}

    def value(self, key, defaultValue=None):
        return self.store.get(key, defaultValue)

    def setValue(self, key, value):
        self.store[key] = value

    def sync(self):
        pass


class QModelIndex:
    def __init__(self, row=-1, column=-1):
        self._row, self._column = row, column

    def row(self):
        return self._row

    def column(self):
        return self._column


class FakeLayout:
    def __init__(self) -> None:
        self.widgets = []

    def addWidget(self, widget, *args):
        self.widgets.append(widget)

    def addStretch(self, stretch=0):
        pass


# Signals a .ui widget may emit; connecting to anything else is an error in the module code.
KNOWN_SIGNALS = {"clicked(bool)", "clicked()", "toggled(bool)", "clicked(QModelIndex)", "timeout()",
                 "currentNodeChanged(vtkMRMLNode*)", "currentIndexChanged(int)", "valueChanged(double)",
                 "valueChanged(int)", "textChanged(QString)", "directoryChanged(QString)",
                 "mrmlSceneChanged(vtkMRMLScene*)", "contentsCollapsed(bool)"}


class FakeWidget:
    """A widget of a .ui file: Qt properties are plain attributes, signals are emitted by tests."""

    def __init__(self, className=None, name="", properties=None) -> None:
        self.className = className or type(self).__name__
        self.objectName = name
        self._properties = dict(properties or {})
        self._slots: dict[str, list] = {}
        self._children: list[FakeWidget] = []
        self._layout = FakeLayout()
        self._items: list[str] = []
        self.enabled = self._properties.get("enabled", True)
        self.text = self._properties.get("text", "")
        self.toolTip = self._properties.get("toolTip", "")
        self.checked = self._properties.get("checked", False)
        self.value = self._properties.get("value", 0)
        self.currentIndex = -1
        self.directory = "."
        self.plainText = ""
        self.mrmlScene = None
        self.tableNode = None
        self.collapsed = self._properties.get("collapsed", False)  # ctkCollapsibleButton

    # Qt API used by the module and by the parameter node wrapper
    def property(self, name):
        return self._properties.get(name)

    def connect(self, signal, slot):
        if signal not in KNOWN_SIGNALS:
            raise AttributeError(f"{self.className} {self.objectName}: unknown signal {signal}")
        self._slots.setdefault(signal, []).append(slot)
        return True

    def disconnect(self, signal, slot):
        slots = self._slots.get(signal, [])
        if slot in slots:
            slots.remove(slot)
            return True
        return False

    def emit(self, signal, *args):
        """Test helper: what Qt does when the user acts on the widget."""
        import inspect

        for slot in self._slots.get(signal, []):
            # PythonQt passes only as many signal arguments as the Python slot accepts.
            parameters = inspect.signature(slot).parameters.values()
            if any(p.kind == p.VAR_POSITIONAL for p in parameters):
                slot(*args)
            else:
                slot(*args[:len([p for p in parameters if p.default is p.empty])])

    def findChildren(self, cls=None):
        found = []
        for child in self._children:
            found.append(child)
            found.extend(child.findChildren(cls))
        return found

    def layout(self):
        return self._layout

    def setMRMLScene(self, scene):
        # qMRMLWidget: the .ui connects mrmlSceneChanged(vtkMRMLScene*) to each receiver's setMRMLScene
        self.mrmlScene = scene
        for receiver in getattr(self, "sceneReceivers", []):
            receiver.setMRMLScene(scene)

    # qMRMLNodeComboBox (Libs/MRML/Widgets/qMRMLNodeComboBox.h): currentNode() / setCurrentNode(vtkMRMLNode*)
    def currentNode(self):
        return getattr(self, "_currentNode", None)

    def setCurrentNode(self, node):
        self._currentNode = node

    def setMRMLTableNode(self, tableNode):  # Libs/MRML/Widgets/qMRMLTableView.h
        self.tableNode = tableNode

    def clear(self):
        self._items = []
        self.plainText = ""
        self.currentIndex = -1

    def addItem(self, text):  # QComboBox
        self._items.append(text)
        if self.currentIndex < 0:
            self.currentIndex = 0

    def appendPlainText(self, text):  # QPlainTextEdit
        self.plainText += text + "\n"


class QWidget(FakeWidget):
    pass


class QCheckBox(FakeWidget):
    pass


class QComboBox(FakeWidget):
    pass


class QDoubleSpinBox(FakeWidget):
    pass


class QPushButton(FakeWidget):
    pass


class QLabel(FakeWidget):
    pass


class QProgressBar(FakeWidget):
    pass


class QPlainTextEdit(FakeWidget):
    pass
