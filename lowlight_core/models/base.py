"""The model contract: what a model declares to the inference plan (lowlight_core.plan), read in one place.

Every registered model subclasses `Model` (curve estimators `CurveModel`) and declares, as class attributes or
from its config in __init__:
- `controls`: the user controls it honours (a subset of CONTROLS); the others are ignored.
- `receptive_radius`: 0 when the model runs on the whole image (global statistics, or curve maps estimated at
  low resolution); r > 0 when each output pixel depends only on inputs within r pixels, so the plan may run it
  in tiles with a halo of r pixels and get the untiled result.
- `inference_tile`: the core tile size the plan uses for it when the caller gives none (DEFAULT_TILE).
- `exposure_mode`: how the plan makes the result hit the target E (EXPOSURE_MODES; by default "calibrate" for
  models with the exposure control, "tone" for the others).
- `bytes_per_pixel`: for a model that runs on the whole image (receptive_radius 0) at full resolution, the memory
  it takes per pixel, measured (0: not declared); the plan refuses an image that would not fit in the memory
  available, naming both, instead of running into the out-of-memory killer.
- `cpu_copy`: whether a registered model runs on the CPU as its inference copy (`inference_model`: BatchNorm
  folded into the convolution before it, channels_last weights and inputs).
Curve models (`CurveModel`) also declare `curve_space` ("rgb" or "value": the photo op that applies the curve
in the image's own dtype; None: the float path), have curve maps (`estimate_alpha`, `apply_curve`,
`photo_curve`; the denoiser then calibrates on the input) and, with `photo_estimate = True`,
`estimate_alpha_photo`: maps estimated at low resolution straight from the integer image.
- `photo_enhance`: the model enhances the image in its own dtype from one whole-image decision,
  `enhance_photo(image, exposure)` ((B, C, H, W) uint8 / uint16 / float, C in 1-4 -> the same; the bilateral
  grid: the grid from the thumbnail, applied in one pass); the plan then runs it whole, with no float copy.

A caller's own nn.Module passed to `enhance(model=module)` needs only `enhance(x, exposure, iterations)`
((B, 3, H, W) float in [0, 1] -> the same); it may set an int `receptive_radius` (default 0: run whole), or
subclass Model to declare the rest. `contract_of` raises a TypeError naming what is missing.
"""
from __future__ import annotations

import copy
import numbers
import threading
import weakref
from dataclasses import dataclass

import torch
import torch.nn as nn

CONTROLS = frozenset({"iterations", "exposure"})
CURVE_SPACES = ("rgb", "value")
# How the plan makes a model's result hit the target exposure E (lowlight_core.exposure): "input" the model's E
# input is the target (it hits it itself), "calibrate" its E input is calibrated on the probe, "tone" a tone
# stage on the value after the model (models without an E input).
EXPOSURE_MODES = ("input", "calibrate", "tone")
DEFAULT_TILE = 512  # core tile of full-resolution networks unless their class declares its own


@dataclass(frozen=True)
class Contract:
    """A model's declaration (see the module docstring); checked when made."""
    controls: frozenset = CONTROLS
    receptive_radius: int = 0
    tile: int = DEFAULT_TILE
    bytes_per_pixel: int = 0
    curve_space: str | None = None   # None: no photo op computes its curve (or no curve at all)
    curve_maps: bool = False         # estimate_alpha / apply_curve / photo_curve
    photo_estimate: bool = False     # estimate_alpha_photo
    cpu_copy: bool = False
    photo_enhance: bool = False      # enhance_photo
    exposure: str = "input"

    def __post_init__(self):
        if not isinstance(self.controls, frozenset) or not self.controls <= CONTROLS:
            raise TypeError(f"controls must be a frozenset within {sorted(CONTROLS)}, got {self.controls!r}")
        for name in ("receptive_radius", "tile", "bytes_per_pixel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < (name == "tile"):
                raise TypeError(f"{name} must be an int >= {int(name == 'tile')}, got {value!r}")
        if self.exposure not in EXPOSURE_MODES:
            raise TypeError(f"exposure must be one of {EXPOSURE_MODES}, got {self.exposure!r}")
        if self.curve_space not in CURVE_SPACES + (None,):
            raise TypeError(f"curve_space must be one of {CURVE_SPACES} or None, got {self.curve_space!r}")


class Model(nn.Module):
    """Base class of the registered models: subclasses implement enhance and declare the contract."""

    controls: frozenset = frozenset()
    receptive_radius: int = 0
    inference_tile: int = DEFAULT_TILE
    bytes_per_pixel: int = 0
    cpu_copy: bool = True
    curve_space: str | None = None
    curve_maps: bool = False
    photo_estimate: bool = False
    photo_enhance: bool = False
    exposure_mode: str | None = None  # None: "calibrate" for models with the exposure control, else "tone"

    def enhance(self, x: torch.Tensor, exposure, iterations: int) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> enhanced, same shape, in [0, 1]; inference only."""
        raise NotImplementedError

    def enhance_photo(self, image: torch.Tensor, exposure) -> torch.Tensor:
        """Models with photo_enhance = True: enhance on the image in its own dtype and layout."""
        raise NotImplementedError(f"{type(self).__name__} declares no photo enhance")

    @property
    def contract(self) -> Contract:
        return Contract(controls=frozenset(self.controls), receptive_radius=self.receptive_radius,
                        tile=self.inference_tile, bytes_per_pixel=self.bytes_per_pixel,
                        curve_space=self.curve_space, curve_maps=self.curve_maps,
                        photo_estimate=self.photo_estimate, cpu_copy=self.cpu_copy,
                        photo_enhance=self.photo_enhance,
                        exposure=self.exposure_mode or ("calibrate" if "exposure" in self.controls else "tone"))


class CurveModel(Model):
    """A curve estimator: curve maps alpha from estimate_alpha(x, exposure), applied n times by apply_curve
    (float) or photo_curve (the image in its own dtype, for curve_space "rgb" / "value")."""

    controls = CONTROLS
    curve_maps = True

    def estimate_alpha(self, x: torch.Tensor, exposure) -> torch.Tensor:
        raise NotImplementedError

    def apply_curve(self, x: torch.Tensor, alpha: torch.Tensor, iterations: int) -> torch.Tensor:
        raise NotImplementedError

    def photo_curve(self, image: torch.Tensor, alpha: torch.Tensor, iterations: int) -> torch.Tensor:
        raise NotImplementedError

    def estimate_alpha_photo(self, image: torch.Tensor, exposure) -> torch.Tensor:
        """Models with photo_estimate = True: estimate_alpha from the image in its own dtype and layout."""
        raise NotImplementedError(f"{type(self).__name__} declares no photo estimate")


def contract_of(model) -> Contract:
    """The contract of a registered model, or of a caller's own module (see the module docstring)."""
    if isinstance(model, Model):
        return model.contract
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a model name or an nn.Module with enhance(x, exposure, iterations), "
                        f"got {type(model).__name__}")
    # A caller's module: the one place its declaration is read.
    if not callable(getattr(model, "enhance", None)):
        raise TypeError(f"model {type(model).__name__} has no enhance(x, exposure, iterations) method: a module "
                        "passed to enhance() must define it (and may set an int receptive_radius)")
    radius = getattr(model, "receptive_radius", 0)
    if isinstance(radius, bool) or not isinstance(radius, numbers.Integral) or radius < 0:
        raise TypeError(f"model {type(model).__name__}: receptive_radius must be an int >= 0 (0: run whole), "
                        f"got {radius!r}")
    return Contract(receptive_radius=int(radius))


# ---------------------------------------------------------------- the CPU inference copy

_INFERENCE_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_INFERENCE_LOCK = threading.Lock()


def _fold_batchnorm(module: nn.Module) -> nn.Module:
    """In place: every Conv2d directly followed by a BatchNorm2d in an nn.Sequential becomes one convolution
    with the norm's affine map (running statistics) folded into its weights, the norm an nn.Identity (indices
    kept). Only valid in eval mode."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.children():
        _fold_batchnorm(child)
    if isinstance(module, nn.Sequential):
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
                    and bn.running_mean is not None):
                module[i], module[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return module


class SigmoidInPlace(nn.Module):
    """nn.Sigmoid on its input's own storage (see _activations_in_place)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sigmoid_()


def _in_place(m: nn.Module) -> nn.Module | None:
    """The in-place module computing activation m (the same values), or None."""
    if type(m) is nn.ReLU:
        return nn.ReLU(inplace=True)
    if type(m) is nn.LeakyReLU:
        return nn.LeakyReLU(m.negative_slope, inplace=True)
    if type(m) is nn.PReLU and m.weight.numel() == 1:  # one slope: a leaky ReLU
        return nn.LeakyReLU(float(m.weight.detach()), inplace=True)
    if type(m) is nn.Sigmoid:
        return SigmoidInPlace()
    return None


def _activations_in_place(module: nn.Module) -> nn.Module:
    """In place: every activation right after a Conv2d in an nn.Sequential (identities between them skipped)
    runs in place on the convolution's output, its only reader: no fresh tensor to allocate and write (dln's
    39 PReLUs were 17 % of its time, 1.3x faster; oneDNN's fused post-ops were as fast but made glibc's heap
    hold 0.9 GB more at 12 MP; docs/cpu_speed.md)."""
    for child in module.children():
        _activations_in_place(child)
    if isinstance(module, nn.Sequential):
        for i in range(len(module) - 1):
            if type(module[i]) is not nn.Conv2d:
                continue
            j = i + 1
            while j < len(module) - 1 and type(module[j]) is nn.Identity:  # a folded BatchNorm
                j += 1
            fast = _in_place(module[j])
            if fast is not None:
                module[j] = fast
    return module


def inference_model(net: nn.Module) -> nn.Module:
    """A copy of a registered network made for CPU inference, or `net` itself (not on the CPU, no
    convolutions): BatchNorm folded into the convolution before it (eval mode: a per-channel affine map), the
    activation after a convolution run in place, and every weight in channels_last, which lets oneDNN run
    the convolutions without reordering; feed it channels_last inputs. Same results within float rounding
    (tests/test_enhance.py); cached per model object, which stays untouched (the registry hands the same
    object to everyone)."""
    params = list(net.parameters())
    if not params or params[0].device.type != "cpu" or net.training \
            or not any(isinstance(m, nn.Conv2d) for m in net.modules()):
        return net
    with _INFERENCE_LOCK:
        fast = _INFERENCE_MODELS.get(net)
        if fast is None:
            fast = _fold_batchnorm(copy.deepcopy(net))
            fast = _activations_in_place(fast).to(memory_format=torch.channels_last).eval()
            fast.requires_grad_(False)
            _INFERENCE_MODELS[net] = fast
        return fast
