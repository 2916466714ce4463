"""The healing methods: a generator removes the finding, the removed part is the map.

- :mod:`.network`: map generator, critic, and the inference network they share;
- :mod:`.adversarial`: WGAN-GP training (settings, pair sampling, calibration, the step);
- :mod:`.taggan`, :mod:`.vagan`: each method's network sign, losses and entry.
"""

from .taggan import TAGGAN
from .vagan import VAGAN

__all__ = ["TAGGAN", "VAGAN"]
