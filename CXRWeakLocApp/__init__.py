"""``cxrweakloc app``: a browser app to review and edit localised findings, on trame-slicer.

Where it lives, and why here: the engine (``CXRWeakLocLib``) must not import Slicer,
and the Slicer extension's folder (``CXRWeakLoc/``) is what Slicer packages and loads
as a module (its CMake lists every file there). The app is neither: it is a web server
that runs Slicer's MRML, Segment Editor and slice views from PyPI (``slicer-core``,
``trame-slicer``) and does what the Slicer panel does through the *same* logic library,
``CXRWeakLocModuleLib`` (import, re-threshold, edit tracking, exports). So it is a package
of its own beside both, installed with the ``app`` extra, and ``cxrweakloc app`` imports
it only when asked (the engine's CLI stays free of Slicer and trame).

- :mod:`.studies`: the queue of a results folder and each study's status on disk (no Slicer).
- :mod:`.access`: which addresses need a token, and the middleware that asks for it.
- :mod:`.server`: the trame app (the scene, the review, the edits, the saves); :mod:`.page`,
  its page; :mod:`.localising`, the engine run on inputs given instead of results.
- :mod:`.command`: what ``cxrweakloc app`` runs.
"""
