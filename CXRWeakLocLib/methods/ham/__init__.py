"""``ham``: hierarchical attention mining (Ouyang et al. 2021).

- :mod:`.network`: the dilated backbone, foreground attention, LSE pooling, two heads;
- :mod:`.objective`: anomaly and class BCE plus the attention constraints.
"""

from ..base import Method
from .network import build_ham
from .objective import HAMObjective

__all__ = ["HAM"]

HAM = Method("ham", build_ham,
             "hierarchical attention mining: class attention bounded by anomaly attention",
             objective=HAMObjective)
