"""``cxrweakloc app [RESULTS_DIR | INPUT...]``: what to review, where to serve it, who may.

Imported by the engine's CLI only when ``app`` is asked for; nothing heavy is imported at
module level, so a missing ``app`` extra is told in one line.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys

from CXRWeakLocLib.core.errors import CXRWeakLocError

from .access import needs_token, new_token

__all__ = ["REQUIRED_MODULES", "run"]

logger = logging.getLogger(__name__)

#: What the app imports beyond the engine: the ``app`` extra.
REQUIRED_MODULES = ("trame", "trame_slicer", "slicer", "CXRWeakLocModuleLib")


def _missing_modules() -> list[str]:
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def run(args: argparse.Namespace) -> int:
    """Serve the review app until interrupted."""
    missing = _missing_modules()
    if missing:
        raise CXRWeakLocError(f"cxrweakloc app needs the app extra: pip install "
                              f"'cxrweakloc[app]' (missing: {', '.join(missing)})")
    from CXRWeakLocLib.core.radiograph import find_radiographs

    from .studies import ReviewQueue

    inputs = args.inputs or [args.out]
    files = []
    if not (len(inputs) == 1 and ReviewQueue.is_results_folder(inputs[0])):
        missing_inputs = [str(p) for p in inputs if not p.exists()]
        if missing_inputs:
            raise CXRWeakLocError(f"not found: {', '.join(missing_inputs)}")
        files = find_radiographs(inputs)
        if not files:
            raise CXRWeakLocError(f"no results or radiographs in {', '.join(map(str, inputs))}")
    results_dir = args.out if files else inputs[0]
    queue = ReviewQueue(results_dir)
    for name in ("trame_client", "trame_server", "trame_rca", "wslink", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)  # a line per widget at INFO

    from .localising import LocalisingJob
    from .server import ReviewApp

    job = LocalisingJob(files, results_dir, args.model, args.findings,
                        sys.executable) if files else None
    token = args.token or (new_token() if needs_token(args.host) else None)
    app = ReviewApp(queue, job, autosave_seconds=args.autosave)
    host = f"[{args.host}]" if ":" in args.host else args.host
    address = f"http://{host}:{args.port}/" + (f"?token={token}" if token else "")
    app.server.controller.on_server_ready.add(
        lambda **_: print(f"cxrweakloc app: reviewing {results_dir} at {address}", flush=True))
    app.start(args.host, args.port, token)
    return 0
