"""plif-zoo: PLIF/LIF neurons, spike max-pooling and the model zoo of Fang et al. (ICCV 2021)."""

from ._io import library_version
from .factory import create_model, load, push_to_hub, save_pretrained
from .networks import NetworkConfig, SpikingConvNet
from .neurons import LIFNode, PLIFNode
from .pooling import SpikeAvgPool2d, SpikeMaxPool2d
from .registry import list_models, model_info

__version__ = library_version()  # set once, in pyproject.toml
__all__ = [
    "PLIFNode",
    "LIFNode",
    "SpikeMaxPool2d",
    "SpikeAvgPool2d",
    "__version__",
    "create_model",
    "load",
    "list_models",
    "model_info",
    "save_pretrained",
    "push_to_hub",
    "NetworkConfig",
    "SpikingConvNet",
]
