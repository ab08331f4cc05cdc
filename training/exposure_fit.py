"""Fits lowlight_core.exposure.AUTO_COEFFS (the auto exposure) on the real SICE training pairs and scores it.

Each dark training frame's probe (the path inference uses) gives the features, its scene's well-exposed frame the
target (its mean brightness); ridge regression of logit(target) on the features. Prints the coefficients to put
in lowlight_core/exposure.py and the mean absolute error of the predicted brightness on the training and the
held-out scenes, next to the best constant (the training targets' mean) and the old fixed E = 0.6.

    python -m training.exposure_fit
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from lowlight_core import exposure

from . import sice_scenes

RIDGE = 1.0  # on the raw features (their spread is about 1): shrinks towards the constant


def read(path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)[None]


def table(data_dir=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (features (N, k), target brightness (N,)) over the real pairs."""
    out, means = {}, {}
    for split in ("train", "validation"):
        feats, targets = [], []
        for low, high in sice_scenes.real_pairs(data_dir, split):
            if high not in means:
                means[high] = float(read(high).double().mean() / 255)
            feats.append(exposure.features(exposure.probe(read(low)))[0].numpy())
            targets.append(means[high])
        out[split] = (np.array(feats), np.array(targets))
    return out


def fit(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    a = np.c_[np.ones(len(x)), x]
    reg = ridge * np.eye(a.shape[1])
    reg[0, 0] = 0  # the intercept is not shrunk
    return np.linalg.solve(a.T @ a + reg, a.T @ np.log(y / (1 - y)))


def predict(coeffs, x: np.ndarray) -> np.ndarray:
    lo, hi = exposure.EXPOSURE_RANGE
    return np.clip(1 / (1 + np.exp(-(coeffs[0] + x @ coeffs[1:]))), lo, hi)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="the data folder (default ../shared/data)")
    args = p.parse_args(argv)
    data = table(args.data)
    coeffs = fit(*data["train"])
    const = data["train"][1].mean()
    print("AUTO_COEFFS =", tuple(round(float(c), 4) for c in coeffs))
    for split, (x, y) in data.items():
        print(f"{split}: {len(y)} pairs, mean |E - target|: auto {np.abs(predict(coeffs, x) - y).mean():.4f}, "
              f"constant {const:.3f} {np.abs(const - y).mean():.4f}, E = 0.6 {np.abs(0.6 - y).mean():.4f}")


if __name__ == "__main__":
    main()
