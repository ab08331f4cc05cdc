"""lowlight: low-light image enhancement with fused native kernels.

`import lowlight_core` stays light: torch and the models load on first use of an attribute below.
"""
__version__ = "0.1.0"

_LAZY = {"ops": ".ops", "reference": ".reference"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod = importlib.import_module(_LAZY[name], __name__)
        globals()[name] = mod
        return mod
    raise AttributeError(f"module 'lowlight_core' has no attribute {name!r}")
