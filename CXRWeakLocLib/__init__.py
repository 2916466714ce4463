"""CXRWeakLoc engine: weakly-supervised localisation of chest X-ray findings.

No ``slicer`` import anywhere in this package: it runs in plain Python, in the
command line ``cxrweakloc``, and inside 3D Slicer alike.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cxrweakloc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.1.0"
