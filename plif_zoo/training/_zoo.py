"""The zoo-level functions training uses, imported in this one place.

Every other module of ``plif_zoo.training`` takes them from here, so moving them (e.g. to a
``factory`` module) is a one-file edit.
"""

from ..hub import read_config, save_pretrained
from ..registry import create_model, list_models, load, model_info

__all__ = ["create_model", "list_models", "load", "model_info", "read_config", "save_pretrained"]
