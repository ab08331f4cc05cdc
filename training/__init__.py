"""Training of the lowlight models: recipes (training.recipes) naming one task per kind of model (training.tasks),
one run path (training.run) and one trainer (training.trainer), data (training.data, training.split), figures
(training.plots), evaluation and model cards (training.evaluate).

Installed as `lowlight_training` (the folder is training/). Command line: `lowlight train RECIPE [--config cpu|gpu]
[--steps N] [--out DIR] [--resume]` (the `lowlight.commands` entry point `train` -> lowlight_training.__main__:main),
or `python -m lowlight_training ...` (`python -m training` in a checkout). Needs matplotlib:
pip install 'napari-lowlight[train]'.

One name per module: in a checkout this folder is importable both as `training` (from the checkout's root) and as
`lowlight_training` (the editable install maps it here). Imported as `training`, the package makes that name the
same package object as `lowlight_training`, and every `training.X` the same module object as `lowlight_training.X`,
so no file is ever loaded twice (two copies of a module would mean two of every class and cache).
"""
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

INSTALLED_NAME = "lowlight_training"


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `training.X` as the module `lowlight_training.X` (imported, not copied)."""

    def __init__(self, alias: str, real: str):
        self.alias, self.real = alias, real

    def _real_name(self, fullname: str) -> str:
        return self.real + fullname[len(self.alias):]

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.alias + "."):
            return None
        real = importlib.util.find_spec(self._real_name(fullname))
        if real is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin=real.origin,
                                              is_package=real.submodule_search_locations is not None)

    def create_module(self, spec):
        return importlib.import_module(self._real_name(spec.name))

    def exec_module(self, module):
        """Nothing: the real module ran when create_module imported it."""

    def get_code(self, fullname):
        """`python -m training` (runpy) runs training/__main__.py from its code object."""
        real = importlib.util.find_spec(self._real_name(fullname))
        return real.loader.get_code(real.name)


def _same_folder_installed() -> bool:
    """Whether lowlight_training is importable and is this very folder (an editable install of this checkout)."""
    try:
        spec = importlib.util.find_spec(INSTALLED_NAME)
    except (ImportError, ValueError):
        return False
    here = Path(__file__).resolve().parent
    return spec is not None and any(Path(p).resolve() == here for p in spec.submodule_search_locations or ())


if __name__ != INSTALLED_NAME and _same_folder_installed():
    sys.meta_path.insert(0, _Alias(__name__, INSTALLED_NAME))
    sys.modules[__name__] = importlib.import_module(INSTALLED_NAME)
