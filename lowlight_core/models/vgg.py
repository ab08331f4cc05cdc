"""VGG-19 feature extractor for the content / self-feature-preserving losses (own definition).

Pretrained weights cannot be downloaded here: they load from a user-given state-dict file with
torchvision's vgg19 key names ("features.N.weight" / "features.N.bias"; "classifier.*" is ignored).
Only the layers up to the deepest requested one are built and loaded. Inputs are RGB in [0, 1];
the ImageNet normalization happens inside.
"""
from __future__ import annotations

import os
import re

import torch
import torch.nn as nn

# torchvision's "E" configuration; "M" = 2x2 max pool
CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def layer_names() -> list[str]:
    """Names of torchvision's vgg19.features[i] in order: conv1_1, relu1_1, ..., pool5."""
    names, block, n = [], 1, 1
    for v in CONFIG:
        if v == "M":
            names.append(f"pool{block}")
            block, n = block + 1, 1
        else:
            names += [f"conv{block}_{n}", f"relu{block}_{n}"]
            n += 1
    return names


LAYER_NAMES = layer_names()
CONV_INDICES = frozenset(i for i, n in enumerate(LAYER_NAMES) if n.startswith("conv"))


class VGG19Features(nn.Module):
    """forward(x) -> {layer name: feature map} for the requested `layers` (default relu5_4).

    weights: path of a torchvision-style vgg19 state dict; None leaves the weights random (only for
    tests: a perceptual loss needs the pretrained ones). The module is frozen (requires_grad False).
    """

    def __init__(self, weights: str | os.PathLike | None = None, layers=("relu5_4",)):
        super().__init__()
        layers = tuple(layers)
        unknown = [n for n in layers if n not in LAYER_NAMES]
        if not layers or unknown:
            raise ValueError(f"unknown VGG-19 layers {unknown or layers}; choose from {LAYER_NAMES}")
        self.layers = layers
        last = max(LAYER_NAMES.index(n) for n in layers)
        mods, cin = [], 3
        for v in CONFIG:
            if len(mods) > last:
                break
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*mods[:last + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights is not None:
            self.load_torchvision(weights)
        self.requires_grad_(False)
        self.eval()

    def load_torchvision(self, path: str | os.PathLike) -> None:
        """Load torchvision vgg19 weights; FileNotFoundError / ValueError with the reason otherwise."""
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"VGG-19 weights file not found: {path} (a torchvision vgg19 state dict with keys "
                f"'features.N.weight'; pretrained weights are not downloaded automatically)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # not a torch file, truncated, or holding pickled objects
            raise ValueError(f"could not read VGG-19 weights from {path}: {e}") from e
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise ValueError(f"{path} is not a state dict (expected a dict of tensors)")
        feature_keys = {k for k in state if k.startswith("features.")}
        foreign = sorted(k for k in feature_keys
                         if not (m := re.fullmatch(r"features\.(\d+)\.(weight|bias)", k)) or int(m[1]) not in CONV_INDICES)
        if foreign:
            raise ValueError(f"{path} does not look like torchvision's vgg19: unexpected keys {foreign[:5]}")
        own = {f"features.{k}": v for k, v in self.features.state_dict().items()}
        missing = sorted(k for k in own if k not in state)
        if missing:
            raise ValueError(f"{path} lacks VGG-19 keys {missing[:5]} (expected torchvision vgg19 'features.N.*' names)")
        bad = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
        if bad:
            raise ValueError(f"{path} has VGG-19 tensors of the wrong shape: {bad[:3]}")
        self.features.load_state_dict({k[len("features."):]: state[k] for k in own})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = (x - self.mean) / self.std
        out = {}
        for name, layer in zip(LAYER_NAMES, self.features):
            h = layer(h)
            if name in self.layers:
                out[name] = h
        return out
