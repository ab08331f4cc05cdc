"""Helpers shared by the model modules: input checks, the exposure plane, luminance, receptive radii."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # Rec. 601 weights, the gray used by EnlightenGAN's attention map


def check_rgb(x, who: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{who}: expected an RGB batch (B, 3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{who}: expected a floating-point tensor in [0, 1], got {x.dtype}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{who}: empty image, shape {tuple(x.shape)}")


def exposure_values(x: torch.Tensor, exposure) -> torch.Tensor:
    """The exposure target E as a (B,) tensor on x's device and dtype; E must lie in (0, 1)."""
    B = x.shape[0]
    e = torch.as_tensor(exposure, dtype=x.dtype, device=x.device)
    if e.dim() == 0:
        e = e.expand(B)
    if e.shape != (B,):
        raise ValueError(f"exposure must be a number or a ({B},) tensor, got shape {tuple(e.shape)}")
    if B and not bool(((e > 0) & (e < 1)).all()):
        raise ValueError(f"exposure must lie in (0, 1) (the controls use [0.3, 0.9]), got {exposure}")
    return e


def exposure_plane(x: torch.Tensor, exposure) -> torch.Tensor:
    """A constant (B, 1, H, W) plane holding E: the conditioning input of the curve estimators."""
    return value_plane(x, exposure_values(x, exposure))


def value_plane(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(B,) values as a constant (B, 1, H, W) plane of x's size, unchecked (exposure_plane checks E; a traced
    graph cannot raise)."""
    return values.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) Rec. 601 luma."""
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


# Paired models with output="value" (DLN, IQE DCGAN): the network's image gives only the new value
# V = max(r, g, b); the colour is the input's. Constants of that output, in one place.
PAIRED_OUTPUTS = ("rgb", "value")  # "rgb": the paper's output image as is (weights without the key)
VALUE_FLOOR = 1 / 255  # one 8-bit step: below it a pixel's chromaticity is noise, so it fades to grey
HIGHLIGHT_KNEE = 0.9  # values above it roll off instead of clipping ...
HIGHLIGHT_CEIL = 254 / 255  # ... towards this, which rounds to 254: no pixel is pushed to 255


def highlight_shoulder(v: torch.Tensor) -> torch.Tensor:
    """Identity up to HIGHLIGHT_KNEE, then a tanh roll-off (slope 1 at the knee) towards HIGHLIGHT_CEIL."""
    span = HIGHLIGHT_CEIL - HIGHLIGHT_KNEE
    rolled = HIGHLIGHT_KNEE + span * torch.tanh((v - HIGHLIGHT_KNEE).clamp_min(0) / span)
    return torch.where(v > HIGHLIGHT_KNEE, rolled, v)


def value_output(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) input x and network image y -> the input's colour at y's value (highlights rolled off).

    The colour is the chromaticity of the input's 3 x 3 mean, so hue and saturation are the input's (measured on
    the held-out real pairs: colour shift 0.04 where the RGB outputs of DLN / IQE score 0.21-0.24); the mean
    thins the sensor's chroma noise, which the gain would otherwise lift with the image (flat-region noise on
    the darkest held-out photos 4.1 % per pixel -> 1.4 %, PSNR +0.09 dB), and (x + f) / (V + f) instead of x / V
    lets near-black pixels fade to grey instead of turning their noise into coloured blotches."""
    f = VALUE_FLOOR
    mean = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    chroma = (mean + f) / (mean.amax(1, keepdim=True) + f)  # brightest channel exactly 1
    return chroma * highlight_shoulder(y.amax(1, keepdim=True).clamp_min(0))


def check_output(output: str, choices: tuple[str, ...] = PAIRED_OUTPUTS) -> str:
    """The `output` config key of a network, refused with the choices named when it is none of them."""
    if output not in choices:
        raise ValueError(f"output must be one of {choices}, got {output!r}")
    return output


def conv_radius(*modules: nn.Module) -> int:
    """Receptive radius of stride-1 convolutions applied one after another: the sum of their half-widths.

    Only valid for a chain (every conv feeds the next); callers sum chains along the longest path.
    """
    r = 0
    for m in modules:
        for c in m.modules():
            if isinstance(c, nn.Conv2d):
                if c.stride != (1, 1):
                    raise ValueError("conv_radius is defined for stride-1 convolutions only")
                r += max(d * (k - 1) // 2 for k, d in zip(c.kernel_size, c.dilation))
    return r


def init_normal_(model: nn.Module, std: float = 0.02) -> None:
    """Conv weights ~ N(0, std), as the official Zero-DCE weights_init (biases keep PyTorch's default).
    A shell on the meta device is left alone: under torch.device("meta") nn.init.normal_ imports
    torch._dynamo (~2-3 s of every CLI start that loads a curve model)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
            nn.init.normal_(m.weight, 0.0, std)


def fit_long_side(h: int, w: int, limit: int | None) -> tuple[int, int]:
    """(h, w) scaled down, aspect kept, so that max(h, w) <= limit; unchanged if already small enough.
    Each side is side * limit / long side rounded half up in integer arithmetic (exact: the ONNX export computes
    the same sizes from symbolic ones, lowlight_core.onnx_export)."""
    long_side = max(h, w)
    if limit is None or long_side <= limit:
        return h, w
    return tuple(max(1, min(limit, (2 * limit * n + long_side) // (2 * long_side))) for n in (h, w))
