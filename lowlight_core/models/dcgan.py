"""IQE DCGAN enhancer (Adlakha et al.; seed 000): a DPED-style residual generator and its discriminator.

Generator: conv9x9 3 -> w + ReLU; `blocks` residual blocks (conv3x3 + norm + ReLU, twice, plus skip);
two conv3x3 + ReLU; conv9x9 w -> 3; output tanh(.) * 0.58 + 0.5 (DPED), clamped to [0, 1] by enhance.
Norm is BatchNorm (the IQE paper's "batch normalized layers"; DPED itself uses instance norm, which
would make each pixel depend on the whole image). In eval mode BatchNorm is a per-channel affine map,
so the generator is local: receptive_radius = 4 + blocks * 2 + 2 + 4 = 18 at the defaults.
output="value" (config key; weights without it are "rgb"): only the value max(r, g, b) of that image is used,
on the input's colour (`_common.value_output`: hue and saturation kept, highlights rolled off).

Discriminator (texture loss): conv11x11 48 stride 4 + LeakyReLU(0.2), then conv + BatchNorm +
LeakyReLU(0.2): 5x5 128 s2, 3x3 192 s1, 3x3 192 s1, 3x3 128 s2 ("same" padding); on a 100x100 crop the
features are 128 x 7 x 7; dense 1024, LeakyReLU, dense 2. forward returns the 2 logits (apply softmax /
cross-entropy in the loss). DPED feeds it grayscale images, hence in_channels=1 by default.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..controls import EXPOSURE_NOMINAL, ITERATIONS_DEFAULT
from .base import Model
from ._common import check_output, check_rgb, conv_radius, value_output


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        )

    def forward(self, x):
        return x + self.body(x)


class DCGANGenerator(Model):
    """forward: (B, 3, H, W) in [0, 1] -> tanh * 0.58 + 0.5 (range [-0.08, 1.08]; enhance clamps)."""

    def __init__(self, width: int = 64, blocks: int = 4, output: str = "rgb"):
        super().__init__()
        self.config = {"width": int(width), "blocks": int(blocks), "output": check_output(output)}
        self.head = nn.Sequential(nn.Conv2d(3, width, 9, padding=4), nn.ReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.tail = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(width, 3, 9, padding=4)
        # a plain chain (the skips are shorter paths), valid while BatchNorm uses running stats (eval)
        self.receptive_radius = conv_radius(self.head, self.blocks, self.tail, self.out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_rgb(x, "DCGANGenerator")
        y = torch.tanh(self.out(self.tail(self.blocks(self.head(x))))) * 0.58 + 0.5
        return value_output(x, y) if self.config["output"] == "value" else y

    @torch.no_grad()
    def enhance(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL, iterations: int = ITERATIONS_DEFAULT) -> torch.Tensor:
        """Inference only (no autograd); exposure and iterations are ignored."""
        return self(x).clamp(0, 1)


def _same_out(size: int, k: int, s: int) -> int:
    return (size + 2 * (k // 2) - k) // s + 1


class DCGANDiscriminator(nn.Module):
    """(B, in_channels, crop, crop) -> (B, 2) logits; `features` gives the flattened conv output."""

    LAYERS = ((128, 5, 2), (192, 3, 1), (192, 3, 1), (128, 3, 2))  # (channels, kernel, stride)

    def __init__(self, in_channels: int = 1, crop: int = 100):
        super().__init__()
        self.config = {"in_channels": int(in_channels), "crop": int(crop)}
        layers = [nn.Conv2d(in_channels, 48, 11, stride=4, padding=5), nn.LeakyReLU(0.2)]
        cin, side = 48, _same_out(crop, 11, 4)
        for cout, k, s in self.LAYERS:
            layers += [nn.Conv2d(cin, cout, k, stride=s, padding=k // 2), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]
            cin, side = cout, _same_out(side, k, s)
        self.convs = nn.Sequential(*layers)
        self.feature_size = cin * side * side
        self.head = nn.Sequential(nn.Linear(self.feature_size, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 2))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        crop, cin = self.config["crop"], self.config["in_channels"]
        if x.dim() != 4 or tuple(x.shape[1:]) != (cin, crop, crop):
            raise ValueError(f"DCGANDiscriminator expects (B, {cin}, {crop}, {crop}) crops, got {tuple(x.shape)}")
        return self.convs(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
