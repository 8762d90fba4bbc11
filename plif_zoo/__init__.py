"""plif-zoo: PLIF/LIF neurons, spike max-pooling and the model zoo of Fang et al. (ICCV 2021)."""

from .neurons import LIFNode, PLIFNode
from .pooling import SpikeAvgPool2d, SpikeMaxPool2d

__version__ = "0.1.0"
__all__ = ["PLIFNode", "LIFNode", "SpikeMaxPool2d", "SpikeAvgPool2d", "__version__"]
