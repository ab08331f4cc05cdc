"""Zero-DCE: DCE-Net, a 7-layer curve estimator (Guo et al. 2020; seeds 001, 002).

Seven 3x3 convolutions, 32 channels, ReLU on the first six, symmetric concatenation (conv5 sees
cat(x3, x4), conv6 cat(x2, x5), conv7 cat(x1, x6)), tanh on 24 maps laid out [iteration][channel]:
alpha[:, 3*i : 3*(i+1)] is the RGB map of curve step i. 79,416 parameters unconditioned.
Sign: alpha > 0 brightens, LE(x) = x + alpha*x*(1-x) (the official code's r is -alpha).
E-conditioning (default) adds a constant input plane holding the exposure target E: +288 parameters.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..controls import EXPOSURE_NOMINAL, ITERATIONS_DEFAULT
from .. import ops
from ._common import check_rgb, conv_radius, exposure_plane, init_normal_
from .base import CURVE_SPACES, CurveModel

MAPS = 8  # curve maps (= iterations of the official recipe)
WIDTH = 32


def symmetric_forward(c, inp: torch.Tensor) -> torch.Tensor:
    """DCE-Net's 7-layer pass with symmetric concatenation, shared by Zero-DCE and Zero-DCE++. The activations
    run in place on each convolution's fresh output (the same values, one pass less over each)."""
    x1 = F.relu(c[0](inp), inplace=True)
    x2 = F.relu(c[1](x1), inplace=True)
    x3 = F.relu(c[2](x2), inplace=True)
    x4 = F.relu(c[3](x3), inplace=True)
    x5 = F.relu(c[4](torch.cat([x3, x4], 1)), inplace=True)
    x6 = F.relu(c[5](torch.cat([x2, x5], 1)), inplace=True)
    return c[6](torch.cat([x1, x6], 1)).tanh_()


def check_curve_space(curve_on: str) -> str:
    if curve_on not in CURVE_SPACES:
        raise ValueError(f"curve_on must be one of {CURVE_SPACES}, got {curve_on!r}")
    return curve_on


def value_curve(x: torch.Tensor, alpha: torch.Tensor, iterations: int) -> torch.Tensor:
    """The LE-curve on the value V = max(r, g, b) with each step's channel-mean alpha; every channel is scaled
    by the same gain V'/V, so hue and saturation stay the input's and no channel exceeds V' <= 1.

    Why: per-channel curves (the papers') change colour wherever the three alpha channels disagree (the
    colour-constancy loss makes them disagree on purpose) and lift a pixel's dark channels more than its
    bright one; on real dark photos that gave a colour shift of 0.18-0.20 (worst photo 0.43: casts in dark
    regions). On V with the gain applied to RGB it measured 0.035 (docs/real-eval.md).
    x: (B, 3, H, W); alpha: (B, 3k, h, w), maps [step][channel]. Differentiable (training uses it).
    """
    v = x.amax(1, keepdim=True)
    a = alpha.unflatten(1, (-1, 3)).mean(2)
    return x * (ops.le_curve(v, a.contiguous(), iterations) / v.clamp_min(1e-6))


class CurveEstimator(CurveModel):
    """Shared inference of the curve models: subclasses define estimate_alpha(x, exposure) and
    config["curve_on"]: "rgb" (each channel its own curve, as the papers) or "value" (see value_curve)."""

    def curve(self, x: torch.Tensor, alpha: torch.Tensor, iterations: int = ITERATIONS_DEFAULT) -> torch.Tensor:
        """n curve steps with the fused op; step i uses map min(i, k - 1), so n > k repeats the last map and
        a low-resolution alpha is resized to x's size inside the op. Differentiable, not clamped."""
        if self.config.get("curve_on", "rgb") == "value":
            return value_curve(x, alpha, iterations)
        return ops.le_curve(x, alpha, iterations)

    def apply_curve(self, x: torch.Tensor, alpha: torch.Tensor, iterations: int = ITERATIONS_DEFAULT) -> torch.Tensor:
        return self.curve(x, alpha, iterations).clamp(0, 1)

    @torch.no_grad()
    def enhance(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL, iterations: int = ITERATIONS_DEFAULT) -> torch.Tensor:
        """Inference only (no autograd): (B, 3, H, W) in [0, 1] -> enhanced (B, 3, H, W) in [0, 1]."""
        return self.apply_curve(x, self.estimate_alpha(x, exposure), iterations)

    @property
    def curve_space(self) -> str | None:
        """The contract's curve space: the photo op that computes this model's curve ("rgb": ops.photo_curve,
        "value": ops.photo_value_curve), so the plan runs it in the image's own dtype; None for a model
        configured with another curve, which keeps the float path."""
        space = self.config.get("curve_on", "rgb")
        return space if space in CURVE_SPACES else None

    def photo_curve(self, image: torch.Tensor, alpha: torch.Tensor,
                    iterations: int = ITERATIONS_DEFAULT) -> torch.Tensor:
        """apply_curve on an image in its own dtype and layout (ops.photo_curve's input and output), with alpha
        from estimate_alpha / estimate_alpha_photo. Value models average each step's RGB maps here, at alpha's
        own (low) resolution as value_curve does, and run ops.photo_value_curve."""
        if self.config.get("curve_on", "rgb") == "value":
            return ops.photo_value_curve(image, alpha.unflatten(1, (-1, 3)).mean(2).contiguous(), iterations)
        return ops.photo_curve(image, alpha, iterations)

    @torch.no_grad()
    def enhance_photo(self, image: torch.Tensor, exposure=EXPOSURE_NOMINAL,
                      iterations: int = ITERATIONS_DEFAULT) -> torch.Tensor:
        """Inference on an image in its own dtype and layout (ops.photo_curve's input and output), for models
        with estimate_alpha_photo (a low-resolution estimate that needs no full-size float copy)."""
        return self.photo_curve(image, self.estimate_alpha_photo(image, exposure), iterations)


class ZeroDCE(CurveEstimator):
    """DCE-Net. forward/estimate_alpha: (B, 3, H, W) -> alpha (B, 24, H, W) in [-1, 1]."""

    # the plan's default tile for this network: 256 px tiles ran faster than 512 at 12 MP on the 2-core CPU,
    # with a lower peak RSS (benchmarks/RESULTS.md, issue 15)
    inference_tile = 256

    def __init__(self, e_conditioned: bool = True, curve_on: str = "rgb"):
        super().__init__()
        self.config = {"e_conditioned": bool(e_conditioned), "curve_on": check_curve_space(curve_on)}
        cin = 4 if e_conditioned else 3

        def conv(i, o):
            return nn.Conv2d(i, o, 3, padding=1)

        self.convs = nn.ModuleList([
            conv(cin, WIDTH), conv(WIDTH, WIDTH), conv(WIDTH, WIDTH), conv(WIDTH, WIDTH),
            conv(2 * WIDTH, WIDTH), conv(2 * WIDTH, WIDTH), conv(2 * WIDTH, 3 * MAPS),
        ])
        init_normal_(self)
        # conv7 depends on x6, which depends on every earlier layer: the longest path crosses all seven.
        self.receptive_radius = conv_radius(self.convs)

    def forward(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL) -> torch.Tensor:
        check_rgb(x, "ZeroDCE")
        inp = torch.cat([x, exposure_plane(x, exposure)], 1) if self.config["e_conditioned"] else x
        return symmetric_forward(self.convs, inp)

    def estimate_alpha(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL) -> torch.Tensor:
        """(B, 24, H, W) curve maps at full resolution."""
        return self(x, exposure)
