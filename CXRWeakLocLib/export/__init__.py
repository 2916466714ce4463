"""One writer per export format; each takes a LocalizationResult and a Radiograph.

:func:`export_all` writes them all for one radiograph, atomically.
"""

from ..core.layout import OutputLayout
from .writer import FORMATS, export_all, is_complete

__all__ = ["FORMATS", "OutputLayout", "export_all", "is_complete"]
