"""A learned denoiser, meant for `denoise="auto"` (issue 22 item 2; NOT wired in yet: no trained weights ship,
see docs/denoise-learned.md): a small FFDNet-like network (Zhang et al. 2018: a noise-level map
as an extra input, the image pixel-unshuffled x2 so that the convolutions run at quarter resolution).

Input: an enhanced image y (float (1, 3, H, W) in [0, 1]) and its per-pixel noise std map (`noise_map`: the
input's Poisson-Gaussian std at the input's local brightness times the enhancement's local gain, the same
quantities the guided filter reads). Output: y minus the predicted noise, clamped to [0, 1].

It is not a registered enhancement model (it is not a choice of `model=`, it runs after any of them), so it
lives here with its own loader; its weights file has the registry's layout ({"model": "denoiser", "config",
"state_dict", "meta"}). Each output pixel depends only on inputs within RECEPTIVE_RADIUS pixels (the map's box
filter plus the convolutions at half resolution), and windows start on even coordinates (plan.windows with an
even core and halo), so running it in tiles with that halo gives the untiled result.
"""
from __future__ import annotations

import functools
import pathlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from .controls import DENOISE_GAIN_FLOOR
from .reference import box_mean

WEIGHTS = pathlib.Path(__file__).resolve().parent / "weights" / "denoiser.pt"
NAME = "denoiser"
MAP_RADIUS = 2          # box radius of the local brightness and gain the noise map reads (as the guided filter's)
MAP_SCALE = 20.0        # the map enters the network as std x 20: a std of 5 % of full scale reads 1
TILE = 512              # core tile (even: windows start on even rows and columns, as the unshuffle needs)
MAX_PARAMETERS = 1_000_000


def noise_map(x: torch.Tensor, y: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """(1, 1, H, W): the noise std of y (enhanced from x, both float (1, C, H, W) in [0, 1]) per pixel: the
    input's std sqrt(a L_in + b) at the box mean L_in of x's luminance, times the local gain box-mean(L_out) /
    max(L_in, DENOISE_GAIN_FLOOR). Box means over (2 MAP_RADIUS + 1)^2 windows clipped at the border."""
    lin = box_mean(x.mean(1, keepdim=True), MAP_RADIUS)
    lout = box_mean(y.mean(1, keepdim=True), MAP_RADIUS)
    gain = lout / lin.clamp_min(DENOISE_GAIN_FLOOR)
    return gain * (a * lin + b).clamp_min(0).sqrt()


def apply(net: "Denoiser", x: torch.Tensor, y: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """y (enhanced from x; float (1, 3, H, W) in [0, 1]) denoised by net given the input's noise model (a, b)."""
    with torch.inference_mode():
        return net(y, noise_map(x, y, a, b))


class Denoiser(nn.Module):
    """Residual noise estimator at half resolution: unshuffle x2 (12 image channels + the map averaged over
    each 2 x 2 block) -> `layers` 3 x 3 convolutions of `width` channels with ReLUs -> 12 channels -> shuffle
    back; output y - that."""

    def __init__(self, width: int = 24, layers: int = 5):
        super().__init__()
        if width < 1 or layers < 2:
            raise ValueError(f"Denoiser needs width >= 1 and layers >= 2, got width={width}, layers={layers}")
        self.config = {"width": int(width), "layers": int(layers)}
        chans = [13] + [width] * (layers - 1) + [12]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in zip(chans[:-1], chans[1:]))

    @property
    def receptive_radius(self) -> int:
        """Full-resolution pixels of context an output pixel reads (even, for tiling): each 3 x 3 convolution
        at half resolution reaches one 2 x 2 block further, plus the block itself, plus the map's box."""
        r = 2 * len(self.convs) + 1 + MAP_RADIUS
        return r + r % 2

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """y (B, 3, H, W) float in [0, 1], sigma (B, 1, H, W) its noise std map -> denoised y, clamped."""
        H, W = y.shape[-2:]
        ph, pw = H % 2, W % 2
        if ph or pw:  # odd sizes: replicate one row/column, so the unshuffle sees whole 2 x 2 blocks
            y_in = F.pad(y, (0, pw, 0, ph), mode="replicate")
            sigma = F.pad(sigma, (0, pw, 0, ph), mode="replicate")
        else:
            y_in = y
        h = torch.cat([F.pixel_unshuffle(y_in, 2), F.avg_pool2d(sigma, 2) * MAP_SCALE], 1)
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = F.relu(h)
        noise = F.pixel_shuffle(h, 2)[:, :, :H, :W]
        return (y - noise).clamp(0, 1)


def _check_file(ckpt, path) -> tuple[dict, dict]:
    if not isinstance(ckpt, dict) or not {"model", "config", "state_dict"} <= ckpt.keys():
        raise ValueError(f"{path} is not a lowlight weights file (needs 'model', 'config', 'state_dict')")
    if ckpt["model"] != NAME:
        raise ValueError(f"{path} holds weights for {ckpt['model']!r}, not {NAME!r}")
    config, state = ckpt["config"], ckpt["state_dict"]
    if not isinstance(config, dict) or set(config) - {"width", "layers"}:
        raise ValueError(f"{path}: 'config' must be a dict of Denoiser options (width, layers), got {config!r}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: 'state_dict' must map names to tensors")
    if any(v.is_floating_point() and not torch.isfinite(v).all() for v in state.values()):
        raise ValueError(f"{path}: weights contain NaN or Inf")
    return config, state


@functools.lru_cache(maxsize=4)
def _load(path: str, stamp: int) -> Denoiser:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, or holding pickled objects
        raise ValueError(f"could not read denoiser weights {path} ({type(e).__name__})") from None
    config, state = _check_file(ckpt, path)
    with torch.device("meta"):
        size = sum(p.numel() for p in Denoiser(**config).parameters())
    if size > MAX_PARAMETERS:
        raise ValueError(f"{path}: the config asks for {size:,} parameters, more than {MAX_PARAMETERS:,}")
    model = Denoiser(**config)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the Denoiser config {config}: {str(e)[:200]}") from None
    return model.eval().requires_grad_(False)


def load(path=None) -> Denoiser:
    """The denoiser (eval mode, CPU) from `path` or the shipped weights; cached per file and modification time,
    so callers must not modify it."""
    p = pathlib.Path(path if path is not None else WEIGHTS).resolve()
    if not p.is_file():
        raise FileNotFoundError(f"denoiser weights are missing: {p} not found; train them with "
                                "`python -m training.tasks.denoiser`")
    return _load(str(p), p.stat().st_mtime_ns)


def save(model: Denoiser, path, meta: dict | None = None) -> None:
    ckpt = {"model": NAME, "config": dict(model.config),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": dict(meta or {})}
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
