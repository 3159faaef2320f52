"""repro: claims from the classic CNN papers, measured and judged."""

from repro import _moved

__version__ = "0.1.0"

_moved.install()  # old module paths keep working, with a DeprecationWarning
