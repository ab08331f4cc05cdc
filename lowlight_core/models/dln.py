"""DLN: Deep Lightening Network (Wang et al. 2020; seed 003), a residual full-resolution enhancer.

    Y = X + E(X),  input to E: [(x - 0.5) * 2, max_c(x)] (4 channels)
    shallow features: conv3x3 4 -> 2w, conv3x3 2w -> w (PReLU after each conv, no normalization)
    three Lightening Back-Projection (LBP) blocks with dense short connections: block i sees the
        shallow features and the outputs of all earlier blocks
    fusion conv3x3 over [shallow, LBP1, LBP2, LBP3] -> w, output conv3x3 w -> 3 (the residual)

LBP block (input F, w channels after its fusion gate):
    Y~ = L1(F), X~ = D1(Y~), R = P1(F) - X~, out = P2(Y~) + L2(R)
L and D share one structure (encode to w/2, code +/- offset, decode to w; three conv3x3), P1/P2 are
1x1 projections. About 0.70 M parameters at w = 64.

output="value" (config key; weights without it are "rgb", Y as above): only the value max(r, g, b) of Y is
used, on the input's colour (`_common.value_output`: hue and saturation kept, highlights rolled off).

Deliberate difference from the official code: its fusion gate is a squeeze-excitation over a *global*
average pool, which makes every output pixel depend on the whole image, so the network could not be
tiled exactly (and a 50 MP image could not run in bounded memory). Here the same two-layer gate
(c -> c/16 -> c, ReLU, sigmoid, same parameter count) runs per pixel as 1x1 convolutions, so the network
is local: receptive_radius (computed from the layers, see `_radius`) is 31 at the default kernel sizes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..controls import EXPOSURE_NOMINAL, ITERATIONS_DEFAULT
from .base import Model
from ._common import check_output, check_rgb, conv_radius, value_output


class ConvPReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__(nn.Conv2d(cin, cout, k, padding=k // 2), nn.PReLU())


class LightenDarken(nn.Module):
    """Encode, shift the code by a learned offset (+ lightens, - darkens), decode."""

    def __init__(self, width: int, sign: int):
        super().__init__()
        code = max(1, width // 2)
        self.sign = sign
        self.encode = ConvPReLU(width, code)
        self.offset = ConvPReLU(code, code)
        self.decode = ConvPReLU(code, width)

    def forward(self, x):
        c = self.encode(x)
        return self.decode(torch.add(c, self.offset(c), alpha=self.sign))  # c +/- offset(c), one pass

    def radius(self) -> int:
        return conv_radius(self.encode, self.offset, self.decode)


class PixelGate(nn.Module):
    """Squeeze-excitation style channel gate evaluated per pixel, then a 1x1 projection to `cout`."""

    def __init__(self, cin: int, cout: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, cin // reduction)
        self.gate = nn.Sequential(nn.Conv2d(cin, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, cin, 1), nn.Sigmoid())
        self.project = ConvPReLU(cin, cout, k=1)

    def forward(self, x):
        return self.project(x + x * self.gate(x))


class LBP(nn.Module):
    def __init__(self, cin: int, width: int):
        super().__init__()
        self.fuse = PixelGate(cin, width)
        self.lighten1 = LightenDarken(width, +1)
        self.darken = LightenDarken(width, -1)
        self.lighten2 = LightenDarken(width, +1)
        self.project_in = ConvPReLU(width, width, k=1)
        self.project_out = ConvPReLU(width, width, k=1)

    def forward(self, x):
        f = self.fuse(x)
        y_est = self.lighten1(f)
        x_est = self.darken(y_est)
        # in place on the projections' fresh outputs (PReLU's backward reads its input, not its output)
        return self.project_out(y_est).add_(self.lighten2(self.project_in(f).sub_(x_est)))

    def radius(self) -> int:
        # longest path: lighten1 -> darken -> lighten2 (the gate and projections are 1x1)
        return self.lighten1.radius() + self.darken.radius() + self.lighten2.radius()


class DLN(Model):
    """forward: (B, 3, H, W) in [0, 1] -> X + E(X) (not clamped; enhance clamps to [0, 1])."""

    def __init__(self, width: int = 64, blocks: int = 3, output: str = "rgb"):
        super().__init__()
        if width < 2 or blocks < 1:
            raise ValueError(f"DLN needs width >= 2 and blocks >= 1, got width={width}, blocks={blocks}")
        self.config = {"width": int(width), "blocks": int(blocks), "output": check_output(output)}
        self.shallow = nn.Sequential(ConvPReLU(4, 2 * width), ConvPReLU(2 * width, width))
        self.lbps = nn.ModuleList([LBP(width * (i + 1), width) for i in range(blocks)])
        self.fusion = ConvPReLU(width * (blocks + 1), width)
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        self.receptive_radius = self._radius()

    def _radius(self) -> int:
        # Dense connections: block i sees every earlier block, so the longest path crosses all of them.
        return (conv_radius(self.shallow) + sum(b.radius() for b in self.lbps)
                + conv_radius(self.fusion, self.out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_rgb(x, "DLN")
        inp = torch.cat([(x - 0.5) * 2, x.amax(1, keepdim=True)], 1)
        feats = [self.shallow(inp)]
        for block in self.lbps:
            feats.append(block(torch.cat(feats, 1)))
        y = x + self.out(self.fusion(torch.cat(feats, 1)))
        return value_output(x, y) if self.config["output"] == "value" else y

    @torch.no_grad()
    def enhance(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL, iterations: int = ITERATIONS_DEFAULT) -> torch.Tensor:
        """Inference only (no autograd); exposure and iterations are ignored (no curve, no E input)."""
        return self(x).clamp(0, 1)
