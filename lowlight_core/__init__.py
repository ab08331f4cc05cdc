"""lowlight: low-light image enhancement with fused native kernels.

`import lowlight_core` stays light: torch and the models load on first use of an attribute below.
"""
__version__ = "0.1.0"

# attribute -> (module, name in it); name None: the module itself
_LAZY = {
    "ops": (".ops", None),
    "reference": (".reference", None),
    "io": (".io", None),
    "enhance": (".inference", "enhance"),
    "enhance_sequence": (".sequence", "enhance_sequence"),
    "enhance_video": (".video", "enhance_video"),
    "list_models": (".models.registry", "list_models"),
    "load_model": (".models.registry", "load_model"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        mod = importlib.import_module(module_name, __name__)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lowlight_core' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
