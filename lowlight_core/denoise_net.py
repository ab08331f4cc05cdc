"""The learned denoiser of `denoise="learned"` (opt-in): a small network that decides, pixel by pixel, how strongly to
filter the luminance and the chroma of an enhanced image, from the image and its noise-level map.

Why this form: the output at each pixel is a convex blend of K fixed candidates, the enhanced image itself and
noise-aware guided filters of it at growing strength (`ops.guided_denoise`, the native filter of
denoise=number), with separate weights for luminance and chroma (chroma noise and JPEG chroma blocks want far
more smoothing than the luminance's grain and texture). As in kernel-predicting denoisers (Bako et al. 2017,
Mildenhall et al. 2018) it cannot paint structure that is not in its candidates and it trains in minutes; like
FFDNet (Zhang et al. 2018) it reads a per-pixel noise-level map (`noise_map`: the input's Poisson-Gaussian
std at its local brightness times the enhancement's local gain), so a clean photo is left about as it is and
texture is kept where the map says the noise is below it. The network runs at half resolution on
pixel-unshuffled features (the luminance, what each candidate removes from it and from the chroma, the map)
and predicts the 2K weights of each of the 4 pixels of a 2 x 2 block.

It is not a registered enhancement model (it is not a choice of `model=`, it runs after any of them), so it
lives here with its own loader; its weights file has the registry's layout ({"model": "denoiser", "config",
"state_dict", "meta"}). Each output pixel reads inputs within `receptive_radius` pixels, and the 2 x 2 blocks
must fall on the image's grid, so running it on strips that start on even rows with that much context gives
the whole-image result (Frames.denoise).
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
# (luma eps weight, chroma share, luma radius, chroma radius) of each guided-filter candidate; the image itself
# is candidate 0. The first is denoise=1's filter (noise.denoise_weights(1, 3)), the second a stronger one
# for the noisiest frames (4 x the eps, twice the radii: JPEG's 16-pixel chroma blocks).
CANDIDATES = ((1.0, 1.0, 2, 6), (4.0, 1.0, 4, 12))
MAX_PARAMETERS = 1_000_000


def noise_map(x: torch.Tensor, y: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """(B, 1, H, W): the noise std of y (enhanced from x, both float (B, C, H, W) in [0, 1]) per pixel: the
    input's std sqrt(a L_in + b) at the box mean L_in of x's luminance, times the local gain box-mean(L_out) /
    max(L_in, DENOISE_GAIN_FLOOR). Box means over (2 MAP_RADIUS + 1)^2 windows clipped at the border."""
    lin = box_mean(x.mean(1, keepdim=True), MAP_RADIUS)
    lout = box_mean(y.mean(1, keepdim=True), MAP_RADIUS)
    gain = lout / lin.clamp_min(DENOISE_GAIN_FLOOR)
    return gain * (a * lin + b).clamp_min(0).sqrt()


def candidates(x: torch.Tensor, y: torch.Tensor, a: float, b: float, specs=CANDIDATES) -> list[torch.Tensor]:
    """[y, guided filters of y given x and the noise model (a, b)]: the images the denoiser blends (float
    (B, 3, H, W) in [0, 1]; no autograd)."""
    from . import ops

    with torch.no_grad():
        return [y] + [ops.guided_denoise(y, x, a, b, luma, chroma, lr, cr) for luma, chroma, lr, cr in specs]


class Denoiser(nn.Module):
    """Per-pixel blend weights of the candidates: features at half resolution (unshuffle x2) -> `layers` - 1
    3 x 3 convolutions of `width` channels with ReLUs -> a 1 x 1 convolution to 4 x 2K logits -> pixel shuffle
    -> softmax over the K candidates, for the luminance and for the chroma."""

    def __init__(self, width: int = 16, layers: int = 4, candidates=CANDIDATES):
        super().__init__()
        if width < 1 or layers < 2:
            raise ValueError(f"Denoiser needs width >= 1 and layers >= 2, got width={width}, layers={layers}")
        specs = tuple(tuple(c) for c in candidates)
        if not specs or any(len(c) != 4 or c[0] < 0 or not 0 <= c[1] <= 1 or c[2] < 0 or c[3] < 0 for c in specs):
            raise ValueError(f"Denoiser candidates must be (luma >= 0, chroma in [0, 1], luma radius >= 0, "
                             f"chroma radius >= 0) tuples, got {candidates!r}")
        self.config = {"width": int(width), "layers": int(layers), "candidates": [list(c) for c in specs]}
        self.specs = specs
        k = len(specs) + 1
        features = 4 + 8 * (k - 1) + 1  # luminance, per candidate what it removes (luminance, chroma), map
        chans = [features] + [width] * (layers - 1)
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in zip(chans[:-1], chans[1:]))
        self.head = nn.Conv2d(width, 4 * 2 * k, 1)

    @property
    def receptive_radius(self) -> int:
        """Full-resolution pixels of context an output pixel reads (even, for strips): the 3 x 3 convolutions
        at half resolution reach one 2 x 2 block further each, plus the block itself, on features that read
        the widest candidate's filter (its luminance's coefficients and their mean, then the chroma's)."""
        filters = max(2 * lr + 2 * cr for _, _, lr, cr in self.specs)
        r = 2 * len(self.convs) + 1 + max(filters, MAP_RADIUS)
        return r + r % 2

    def forward(self, x: torch.Tensor, y: torch.Tensor, noise_a: float, noise_b: float) -> torch.Tensor:
        """y (B, 3, H, W) enhanced from x (same shape), float in [0, 1], x's noise model (a, b) -> y denoised."""
        return self.blend(candidates(x, y, noise_a, noise_b, self.specs), noise_map(x, y, noise_a, noise_b))

    def blend(self, cands: list[torch.Tensor], sigma: torch.Tensor) -> torch.Tensor:
        """The candidates (candidates(); the first is the image) blended by the predicted weights given the
        noise map sigma (B, 1, H, W); float (B, 3, H, W) in [0, 1]."""
        H, W = cands[0].shape[-2:]
        ph, pw = H % 2, W % 2
        if ph or pw:  # odd sizes: replicate one row/column, so the unshuffle sees whole 2 x 2 blocks
            cands = [F.pad(c, (0, pw, 0, ph), mode="replicate") for c in cands]
            sigma = F.pad(sigma, (0, pw, 0, ph), mode="replicate")
        lum = [c.mean(1, keepdim=True) for c in cands]
        chroma = [c - l for c, l in zip(cands, lum)]
        feats = [F.pixel_unshuffle(lum[0] - 0.5, 2)]
        for l, c in zip(lum[1:], chroma[1:]):
            feats += [F.pixel_unshuffle(l - lum[0], 2), F.pixel_unshuffle((c - chroma[0]).abs().sum(1, True), 2)]
        h = torch.cat(feats + [F.avg_pool2d(sigma, 2) * MAP_SCALE], 1)
        for conv in self.convs:
            h = conv(h).relu_()
        logits = F.pixel_shuffle(self.head(h), 2)
        k = len(cands)
        wl, wc = logits[:, :k].softmax(1), logits[:, k:].softmax(1)
        luma = (wl * torch.cat(lum, 1)).sum(1, keepdim=True)
        out = wc[:, :1] * chroma[0]
        for i in range(1, k):
            out = out + wc[:, i:i + 1] * chroma[i]
        return (out + luma)[:, :, :H, :W].clamp(0, 1)


def apply(net: Denoiser, x: torch.Tensor, y: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """y (enhanced from x; float (B, 3, H, W) in [0, 1]) denoised by net given the input's noise model (a, b)."""
    with torch.no_grad():  # not inference_mode: callers write into the result in place
        return net(x, y, a, b)


def _check_file(ckpt, path) -> tuple[dict, dict]:
    if not isinstance(ckpt, dict) or not {"model", "config", "state_dict"} <= ckpt.keys():
        raise ValueError(f"{path} is not a lowlight weights file (needs 'model', 'config', 'state_dict')")
    if ckpt["model"] != NAME:
        raise ValueError(f"{path} holds weights for {ckpt['model']!r}, not {NAME!r}")
    config, state = ckpt["config"], ckpt["state_dict"]
    if not isinstance(config, dict) or set(config) - {"width", "layers", "candidates"}:
        raise ValueError(f"{path}: 'config' must be a dict of Denoiser options (width, layers, candidates), "
                         f"got {config!r}")
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
