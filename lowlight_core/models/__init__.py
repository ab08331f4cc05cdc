"""Enhancement models (Zero-DCE, Zero-DCE++, DLN, IQE DCGAN, EnlightenGAN, gamma, CLAHE) and their registry.

The model modules import on first use through the registry's builders.
"""
from .registry import (
    ModelInfo,
    clear_cache,
    get_model_info,
    has_weights,
    list_models,
    load_model,
    save_weights,
    weights_path,
)

__all__ = ["ModelInfo", "clear_cache", "get_model_info", "has_weights", "list_models", "load_model",
           "save_weights", "weights_path"]
