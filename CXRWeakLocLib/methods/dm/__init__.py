"""``dm``: disease-mask spatial attention with an alignment module (seed 002).

- :mod:`.network`: the aligner, the attention-guided CAM classifier, seed ensembles;
- :mod:`.objectives`: the alignment stage's loss and the classification stages';
- :mod:`.stages`: the non-gradient stages between trainer runs (anchor image, disease
  masks, pseudo masks, seed files, ensembles). They stay in the engine because they
  are how ``dm`` is trained on any archive, not only ours: a user's own training
  needs its anchor and masks as much as our recipe (``training/dm/recipe.py``) does.
"""

from ..base import Method, Smoke
from .network import build_dm
from .objectives import dm_objective

__all__ = ["DM"]

DM = Method("dm", build_dm,
            "CAM classifier on aligned images with disease-mask attention",
            objective=dm_objective,
            smoke=Smoke(options={"alignment_size": 32, "anchor_size": 32, "mask_size": 8}))
