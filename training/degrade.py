"""Synthetic low/normal pairs made from well-exposed photos, for the paired models (DLN, IQE DCGAN).

One degradation, applied to a normal image Y in [0, 1] (every parameter drawn per image):
  1. DLN's simulation, per channel c:  L_c = beta * (alpha_c * Y_c) ** gamma
     alpha_c ~ U(0.9, 1) (per channel: a slight colour cast), beta ~ U(0.5, 1), gamma ~ U(1.5, 5);
     with probability `mild_prob` gamma ~ U(1, 1.5) instead, so the model also sees inputs that need little
     or no lightening (a model trained only on very dark inputs over-brightens normal photos).
  2. gain ~ logU(0.7, 1.4) (exposure error of the camera) and a white-balance shift: each channel times
     exp(N(0, 0.04)).
  3. Poisson-Gaussian sensor noise on the dark signal s: s + sqrt(a * s + b) * N(0, 1),
     a ~ logU(1e-4, 1e-2) (shot noise), b ~ logU(1e-6, 1e-4) (read noise), then clipped to [0, 1].
  4. 8-bit quantization (a dark JPEG holds only a few dozen levels), and with probability `jpeg_prob` a real
     JPEG round trip at quality ~ U(50, 95) (block and ringing artifacts of phone photos).
The target is Y itself. DLN circle training (`--circle`) is in training.tasks.dln.DLNTask.

The validation split degrades each held-out image with a generator seeded by its file name, so every run,
machine and model sees the same pairs; `python -m training.degrade --out DIR` writes them as PNG files for
`lowlight eval --low DIR/low --high DIR/high`.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import data as data_mod
from .split import split


@dataclass(frozen=True)
class Degradation:
    gamma: tuple[float, float] = (1.5, 5.0)
    mild_prob: float = 0.15
    mild_gamma: tuple[float, float] = (1.0, 1.5)
    alpha: tuple[float, float] = (0.9, 1.0)
    beta: tuple[float, float] = (0.5, 1.0)
    gain: tuple[float, float] = (0.7, 1.4)  # log-uniform
    white_balance_sigma: float = 0.04
    shot_noise: tuple[float, float] = (1e-4, 1e-2)  # log-uniform
    read_noise: tuple[float, float] = (1e-6, 1e-4)  # log-uniform (variance)
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (50, 95)


def _uniform(g: torch.Generator, lo: float, hi: float, n: int = 1) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _log_uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return float(math.exp(_uniform(g, math.log(lo), math.log(hi))))


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    a = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(out.copy()).permute(2, 0, 1).float().div_(255.0)


def degrade(normal: torch.Tensor, g: torch.Generator, d: Degradation = Degradation()) -> torch.Tensor:
    """(3, H, W) float in [0, 1] -> its synthetic low-light version (3, H, W), a function of g's state."""
    if normal.dim() != 3 or normal.shape[0] != 3:
        raise ValueError(f"degrade: expected a (3, H, W) image, got {tuple(normal.shape)}")
    y = normal.double()
    mild = float(torch.rand((), generator=g)) < d.mild_prob
    gamma = float(_uniform(g, *(d.mild_gamma if mild else d.gamma)))
    alpha = _uniform(g, *d.alpha, n=3).view(3, 1, 1)
    beta = float(_uniform(g, *d.beta))
    low = beta * (alpha * y).pow(gamma)
    gain = _log_uniform(g, *d.gain)
    wb = torch.exp(torch.randn(3, generator=g, dtype=torch.float64) * d.white_balance_sigma).view(3, 1, 1)
    low = (low * gain * wb).clamp(0, 1)
    a, b = _log_uniform(g, *d.shot_noise), _log_uniform(g, *d.read_noise)
    noise = torch.randn(low.shape, generator=g, dtype=torch.float64)
    low = (low + (a * low + b).sqrt() * noise).clamp(0, 1)
    low = (low * 255).round() / 255
    jpeg = float(torch.rand((), generator=g)) < d.jpeg_prob
    quality = int(torch.randint(d.jpeg_quality[0], d.jpeg_quality[1] + 1, (1,), generator=g))
    low = low.float()
    return _jpeg(low, quality) if jpeg else low


class PairBatches(data_mod.CropBatches):
    """Item s: the batch of step s as a (2, batch, 3, crop, crop) tensor [low, normal]: random crops (and flips)
    of the normal images, each degraded with the step's own generator."""

    def __init__(self, paths, batch: int, crop: int, seed: int = 0, resize_long: int | None = None,
                 degradation: Degradation = Degradation()):
        super().__init__(paths, batch, crop, seed, resize_long)
        self.degradation = degradation

    def __getitem__(self, step: int) -> torch.Tensor:
        low, normal = [], []
        for i, g in self.picks(step, len(self.paths)):
            normal.append(self._sample(self.paths[i], g))
            low.append(degrade(normal[-1], g, self.degradation))
        return torch.stack([torch.stack(low), torch.stack(normal)])


def image_generator(path: Path) -> torch.Generator:
    """A generator seeded by the file name (not the folder): the pair of a file is the same everywhere."""
    g = torch.Generator()
    g.manual_seed(int.from_bytes(hashlib.sha1(Path(path).name.encode()).digest()[:8], "big") % 2**63)
    return g


def validation_pairs(paths, resize_long: int | None = None, limit: int | None = None,
                     degradation: Degradation = Degradation()) -> list[torch.Tensor]:
    """Whole held-out images and their fixed degradations: [(2, 1, 3, H, W) tensor [low, normal], ...]."""
    out = []
    for p in list(paths)[:limit] if limit else paths:
        y = data_mod.load_rgb(p, resize_long)
        out.append(torch.stack([degrade(y, image_generator(p), degradation), y])[:, None])
    return out


def validation_normals(data_dir=None, fraction: float = data_mod.VALIDATION_FRACTION, cache_file=None) -> list[Path]:
    """The held-out, well-exposed SICE images the synthetic validation split is made from."""
    _, val = split(data_mod.list_images(data_dir, ("sice_part1",)), fraction)
    return data_mod.sice_normals(val, cache_file)


def write_pairs(paths, out_dir: Path, resize_long: int | None = None) -> int:
    """PNG files out_dir/low/<stem>.png and out_dir/high/<stem>.png for `lowlight eval`."""
    for sub in ("low", "high"):
        (Path(out_dir) / sub).mkdir(parents=True, exist_ok=True)
    for p, pair in zip(paths, validation_pairs(paths, resize_long)):
        for sub, img in zip(("low", "high"), pair[:, 0]):
            a = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(a).save(Path(out_dir) / sub / f"{Path(p).stem}.png")
    return len(paths)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.degrade",
                                description="Write the synthetic validation pairs (held-out, well-exposed SICE "
                                            "images and their fixed degradations) as PNG files.")
    p.add_argument("--out", type=Path, required=True, help="folder; gets low/ and high/")
    p.add_argument("--data", type=Path, help="folder holding sice_part1 (default ../shared/data)")
    p.add_argument("--val-fraction", type=float, default=data_mod.VALIDATION_FRACTION)
    p.add_argument("--resize-long", type=int, help="shrink so the long side is at most this (default: as is)")
    args = p.parse_args(argv)
    paths = validation_normals(args.data, args.val_fraction)
    if not paths:
        raise SystemExit("no held-out well-exposed images found")
    n = write_pairs(paths, args.out, args.resize_long)
    print(f"wrote {n} pairs to {args.out}/low and {args.out}/high", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
