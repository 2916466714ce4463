"""Feature extractors the localisation networks build on (ImageNet-initialised ones here)."""

from .efficientnet import EfficientNetFeatures, read_lite0_state
from .frozen import LeadingFreeze

__all__ = ["EfficientNetFeatures", "LeadingFreeze", "read_lite0_state"]
