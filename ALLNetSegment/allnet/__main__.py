"""``python -m allnet`` = the ``allnet`` command (used by Slicer's PythonSlicer subprocess)."""
import sys

from .cli import main

sys.exit(main())
