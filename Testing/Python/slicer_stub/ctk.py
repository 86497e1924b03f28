"""Stand-in for CTK widget classes referenced by type (widgets themselves come from qt.FakeWidget)."""
from qt import FakeWidget


class ctkSliderWidget(FakeWidget):
    pass


class ctkCollapsibleButton(FakeWidget):
    pass


class ctkDirectoryButton(FakeWidget):
    pass


class ctkComboBox(FakeWidget):
    pass


class ctkCheckBox(FakeWidget):
    pass
