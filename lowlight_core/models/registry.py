"""The model registry: names, descriptions, weight files, each model's declared contract, and cached loading.

Adding a model: its module (a base.Model subclass declaring its contract) and one entry in _MODELS.

A weights file is a torch.save'd dict {"model": name, "config": model.config, "state_dict", "meta"};
load_model rebuilds the model from its config, so a file trained with non-default options loads as is.
"""
from __future__ import annotations

import functools
import importlib
import os
import pathlib
import tempfile
import threading
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from .base import Contract, contract_of

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    kind: str                    # "curve", "image" or "classical"
    weights: str | None          # file name in lowlight_core/weights/, None for classical methods
    build: Callable[..., nn.Module]

    @functools.cached_property
    def contract(self) -> Contract:
        """What the model declares (lowlight_core.models.base) at its default config; a loaded model's own
        `contract` follows its weights file's config (the receptive radius of a narrower network, ...)."""
        with torch.device("meta"):  # a shell without memory
            return contract_of(self.build())

    @property
    def controls(self) -> frozenset:
        """The user controls the model honours (a subset of {"iterations", "exposure"})."""
        return self.contract.controls


def _lazy(module: str, attr: str) -> Callable[..., nn.Module]:
    """A builder that imports its module on first use, so listing models stays cheap."""
    def build(**config):
        return getattr(importlib.import_module(f".{module}", __package__), attr)(**config)
    build.__qualname__ = f"{module}.{attr}"
    return build


_MODELS = {m.name: m for m in [
    ModelInfo("zero_dce", "Zero-DCE: 7-layer curve estimator, 8 per-step curve maps at full resolution",
              "curve", "zero_dce.pt", _lazy("zero_dce", "ZeroDCE")),
    ModelInfo("zero_dce_pp", "Zero-DCE++: 10k-parameter curve estimator run at low resolution (fastest)",
              "curve", "zero_dce_pp.pt", _lazy("zero_dce_pp", "ZeroDCEPP")),
    ModelInfo("zero_dce_pp_paired", "Zero-DCE++'s curve model trained on real pairs: the tone of a real longer "
              "exposure, the input's colour (fast)", "curve", "zero_dce_pp_paired.pt",
              _lazy("zero_dce_pp", "ZeroDCEPP")),
    ModelInfo("bilateral_grid", "Bilateral grid: affine colour grid decided on a 256 px thumbnail, applied at full "
              "resolution (supervised)", "image", "bilateral_grid.pt", _lazy("bilateral_grid", "BilateralGrid")),
    ModelInfo("dln", "DLN: Deep Lightening Network, residual back-projection CNN (supervised)",
              "image", "dln.pt", _lazy("dln", "DLN")),
    ModelInfo("iqe_dcgan", "IQE DCGAN: DPED-style residual generator trained adversarially on pairs",
              "image", "iqe_dcgan.pt", _lazy("dcgan", "DCGANGenerator")),
    ModelInfo("enlightengan", "EnlightenGAN: attention-guided U-Net trained on unpaired images",
              "image", "enlightengan.pt", _lazy("enlightengan", "EnlightenGANGenerator")),
    ModelInfo("gamma", "Gamma correction with the gamma chosen so the mean luminance reaches E",
              "classical", None, _lazy("classical", "Gamma")),
    ModelInfo("clahe", "CLAHE: contrast-limited adaptive histogram equalization of the luminance",
              "classical", None, _lazy("classical", "CLAHE")),
]}


def list_models() -> list[ModelInfo]:
    return list(_MODELS.values())


def get_model_info(name: str) -> ModelInfo:
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_MODELS)}") from None


def weights_path(name: str) -> pathlib.Path:
    """Where the shipped weights of `name` live (ValueError for a classical method, which has none)."""
    info = get_model_info(name)
    if info.weights is None:
        raise ValueError(f"{name} is a classical method and has no weights")
    return WEIGHTS_DIR / info.weights


def has_weights(name: str) -> bool:
    info = get_model_info(name)
    return info.weights is None or weights_path(name).is_file()


_cache: dict = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def load_model(name: str, device="cpu", weights: str | os.PathLike | None = None) -> nn.Module:
    """The model in eval mode on `device`, from `weights` (a path) or the shipped file.

    Cached per (name, device, weights file and its modification time): repeated calls return the same
    module, so callers must not modify it. Classical methods need no weights.
    """
    info = get_model_info(name)
    device = torch.device(device)
    if info.weights is None and weights is None:
        path, stamp = None, None
    else:
        path = pathlib.Path(weights if weights is not None else weights_path(name)).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"weights for {name} are missing: {path} not found; "
                                    f"train them with `lowlight train {name}`")
        stamp = path.stat().st_mtime_ns
    key = (name, str(device), str(path), stamp)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    model = info.build() if path is None else _load_file(info, path)
    model = model.to(device).eval()
    with _cache_lock:
        return _cache.setdefault(key, model)


MAX_PARAMETERS = 200_000_000  # a weights file's config may not ask for a larger network (about 0.8 GB)


NEGLIGIBLE_WEIGHT = 1e-30  # |w| below it loads as 0: w * x < 1e-22 for any activation up to 1e8


def _without_negligible(t: torch.Tensor) -> torch.Tensor:
    """t with its values below NEGLIGIBLE_WEIGHT in magnitude set to 0. Weight decay leaves tens of thousands
    on dead filters, and the CPU runs products with subnormal results on a slow path (several times slower:
    docs/performance.md). No result in [0, 1] can depend on them."""
    if not t.is_floating_point():
        return t
    return t.masked_fill(t.abs() < NEGLIGIBLE_WEIGHT, 0)


def _load_file(info: ModelInfo, path: pathlib.Path) -> nn.Module:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, or holding pickled objects
        reason = str(e).splitlines()[0] if str(e).strip() else "empty or unreadable"
        raise ValueError(f"could not read weights file {path}: not a complete PyTorch file saved by lowlight "
                         f"({type(e).__name__}: {reason[:200]})") from None
    if not isinstance(ckpt, dict) or not {"model", "config", "state_dict"} <= ckpt.keys():
        raise ValueError(f"{path} is not a lowlight weights file (needs 'model', 'config', 'state_dict')")
    if ckpt["model"] != info.name:
        raise ValueError(f"{path} holds weights for {ckpt['model']!r}, not {info.name!r}")
    config, state = ckpt["config"], ckpt["state_dict"]
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise ValueError(f"{path}: 'config' must be a dict of constructor options, got {type(config).__name__}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: 'state_dict' must map names to tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: weights contain NaN or Inf (in {', '.join(bad[:3])})")
    state = {k: _without_negligible(v) for k, v in state.items()}
    try:
        with torch.device("meta"):  # the config first builds a shell without memory: no huge allocations
            size = sum(p.numel() for p in info.build(**config).parameters())
        if size > MAX_PARAMETERS:
            raise ValueError(f"the config asks for {size:,} parameters, more than the limit of {MAX_PARAMETERS:,}")
        model = info.build(**config)
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:  # bad config keys or values, bad tensors
        raise ValueError(f"{path} does not fit {info.name} with config {config}: {str(e)[:300]}") from None
    return model


def save_weights(model: nn.Module, name: str, path: str | os.PathLike | None = None,
                 meta: dict | None = None, storage_dtype: torch.dtype | None = None) -> pathlib.Path:
    """Write {"model", "config", "state_dict", "meta"} atomically (temp file + os.replace).

    path defaults to the shipped location weights_path(name); meta must hold plain Python values
    (numbers, strings, lists, dicts) so that torch.load(weights_only=True) can read it back.
    storage_dtype (e.g. torch.float16) stores the floating-point tensors in that dtype, halving the file;
    loading casts them back to the model's float32 parameters.
    """
    get_model_info(name)
    path = pathlib.Path(path) if path is not None else weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "model": name,
        "config": dict(model.config),
        "state_dict": {k: v.detach().cpu().to(storage_dtype) if storage_dtype and v.is_floating_point()
                       else v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
