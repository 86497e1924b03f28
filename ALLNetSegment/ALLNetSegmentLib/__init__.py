"""Slicer side of ALLNet: panel, run logic, installation, result import, lesion table, export.

Submodules are imported where they are used, so that importing this package needs only Slicer.
"""
