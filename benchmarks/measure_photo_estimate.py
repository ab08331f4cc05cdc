"""How far the photo path's Zero-DCE++ estimate (area_reduce of the integer image, then the trained resize of
that thumbnail) moves the shipped weights' results from the float path they were trained with (antialiased
bilinear resize of the full float image): max and mean absolute difference in output levels, uint8, E = 0.6,
8 steps. Real photos from ../shared/data (read in place), the bundled sample, and one real photo upscaled to
12 MP (the size where the two resizes differ most).

usage: python benchmarks/measure_photo_estimate.py [PHOTOS_PER_FOLDER]
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lowlight_core.models import zero_dce_pp
from lowlight_core.models.registry import load_model

ROOT = Path(__file__).parents[1]
DATA = ROOT.parent / "shared" / "data"


def both_paths(net, a: np.ndarray):
    image = torch.from_numpy(a).permute(2, 0, 1)[None]
    with torch.no_grad():
        x = image.float() / 255
        old = net.apply_curve(x, net.estimate_alpha(x, 0.6), 8).mul(255).round().to(torch.uint8)
        new = net.enhance_photo(image, 0.6, 8)
    return (new.to(torch.int64) - old.to(torch.int64)).abs()


def main(per_folder: int = 8) -> None:
    net = load_model("zero_dce_pp", device="cpu")
    photos = [("sample_dark.png", ROOT / "lowlight_core" / "data" / "sample_dark.png")]
    for folder in ("lol_train_low", "sice_part1"):
        files = sorted((DATA / folder).iterdir())
        photos += [(f"{folder}/{p.name}", p) for p in files[:: max(1, len(files) // per_folder)][:per_folder]]
    print(f"thumbnail oversample {zero_dce_pp.THUMBNAIL_OVERSAMPLE}x the estimate size")
    print("| photo | size | max abs diff (levels) | mean abs diff (levels) | pixels changed |")
    print("|---|---|---:|---:|---:|")
    worst, means = 0, []
    for name, path in photos:
        a = np.array(Image.open(path).convert("RGB"))
        d = both_paths(net, a)
        worst, means = max(worst, int(d.max())), means + [float(d.double().mean())]
        print(f"| {name} | {a.shape[1]}x{a.shape[0]} | {int(d.max())} | {means[-1]:.4f} | "
              f"{100 * float((d > 0).double().mean()):.2f}% |")
    a = np.array(Image.open(photos[1][1]).convert("RGB"))
    big = F.interpolate(torch.from_numpy(a).permute(2, 0, 1)[None].float(), size=(3000, 4000), mode="bicubic",
                        align_corners=False).clamp(0, 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    d = both_paths(net, np.ascontiguousarray(big))
    print(f"| {photos[1][0]} upscaled | 4000x3000 | {int(d.max())} | {float(d.double().mean()):.4f} | "
          f"{100 * float((d > 0).double().mean()):.2f}% |")
    print(f"all {len(photos)} photos: max {max(worst, int(d.max()))} levels, mean of means {np.mean(means):.4f}")


if __name__ == "__main__":
    main(*(int(v) for v in sys.argv[1:2]))
