"""Slicer's translation functions for user-facing strings.

``from .i18n import tr as _`` binds Slicer's own ``slicer.i18n.tr`` in the application
(so the translation context is the calling file, as Slicer's tools expect); outside
it (slicer-core, which ships no ``slicer.i18n``) the text is returned as it is.
"""

from __future__ import annotations

__all__ = ["tr", "translate"]

try:
    from slicer.i18n import tr, translate
except ImportError:  # slicer-core: no application, no translations

    def tr(text: str) -> str:
        """The text itself (no translations outside the Slicer application)."""
        return text

    def translate(context: str, text: str) -> str:
        """The text itself (no translations outside the Slicer application)."""
        return text
