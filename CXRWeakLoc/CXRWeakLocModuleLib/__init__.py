"""The CXRWeakLoc module's code behind its thin module file; none of it imports torch.

The engine (``CXRWeakLocLib``) lives beside the module: in the scripted-modules folder
of an installed extension, in the repository root of a source tree added through
*Additional module paths*. Importing this package makes that folder importable, so the
panel reads cards and results with the engine's torch-free core.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = ["ENGINE_ROOT"]

#: The folder holding ``CXRWeakLocLib``: the scripted-modules folder in an installed
#: extension, the repository root in a source tree.
ENGINE_ROOT = next(
    (p for p in Path(__file__).resolve().parents[1:3] if (p / "CXRWeakLocLib").is_dir()),
    Path(__file__).resolve().parents[2],
)

if importlib.util.find_spec("CXRWeakLocLib") is None:
    sys.path.append(str(ENGINE_ROOT))
