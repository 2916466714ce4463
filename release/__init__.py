"""Release tooling (not shipped with the engine): shipping a trained model, the README's
results table, the packaging file lists, and the shipped models' recorded outputs.

Run from the repository root: ``python -m release.ship``, ``python -m release.table``,
``python -m release.sync``, ``python -m release.fingerprints``.
"""
