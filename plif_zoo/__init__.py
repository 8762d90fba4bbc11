"""plif-zoo: PLIF/LIF neurons, spike max-pooling and the model zoo of Fang et al. (ICCV 2021)."""

from .hub import push_to_hub, save_pretrained
from .networks import NetworkConfig, SpikingConvNet
from .neurons import LIFNode, PLIFNode
from .pooling import SpikeAvgPool2d, SpikeMaxPool2d
from .registry import create_model, list_models, load, model_info

__version__ = "0.1.0"
__all__ = ["PLIFNode", "LIFNode", "SpikeMaxPool2d", "SpikeAvgPool2d", "__version__",
           "create_model", "load", "list_models", "model_info", "save_pretrained", "push_to_hub",
           "NetworkConfig", "SpikingConvNet"]
