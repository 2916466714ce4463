"""Every localisation method, in one registry.

A method is a :class:`~.base.Method`: its network builder, how it is trained, and its
declared abilities. :func:`build_network` builds the network a model card describes;
:func:`method_named` finds a method with a one-line error for unknown names. How to
add a method: ``docs/adding-a-method.md``.
"""

from __future__ import annotations

from torch import nn

from ..core.errors import ConfigError
from ..networks.backbone import BackboneConfig
from .base import HealingNetwork, LocalizationNetwork, Method
from .cam import CAM
from .dm import DM
from .gradcam import GRADCAM
from .ham import HAM
from .healing import TAGGAN, VAGAN

__all__ = ["METHODS", "HealingNetwork", "LocalizationNetwork", "Method", "build_network",
           "method_named"]

#: method name -> :class:`Method`, in the order ``cxrweakloc models`` lists them.
METHODS: dict[str, Method] = {m.name: m for m in (CAM, GRADCAM, DM, HAM, TAGGAN, VAGAN)}


def method_named(name: str) -> Method:
    """The registered method called ``name``; a :class:`ConfigError` for unknown names."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
    return METHODS[name]


def build_network(method: str, architecture: dict, num_classes: int) -> nn.Module:
    """A method's network with random weights (a model card's ``method``,
    ``architecture`` and number of findings; load the weights after).

    Raises:
        ConfigError: an unknown method.
        ValueError: an ``architecture`` the method refuses (unknown options, bad
            backbone settings).
    """
    backbone = BackboneConfig(**architecture.get("backbone", {}))
    return method_named(method).build(backbone, num_classes,
                                      dict(architecture.get("options", {})))
