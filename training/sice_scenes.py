"""Real low/normal pairs from the SICE Part 1 exposure sequences (../shared/data/sice_part1).

SICE stores each scene as consecutive file numbers shot from a tripod at different exposures (not always in
exposure order). This module groups the files into scenes by image structure, never by brightness, picks each
scene's target (the well-exposed frame with the fewest clipped pixels) and its dark inputs, checks that every
dark input is aligned with its target, and writes the result as a small manifest committed beside this file
(`sice_scenes.csv`: file, scene, role, mean, clipped, shift, structure).

Structure of one frame: a 64 px grey thumbnail, as two brightness-invariant gradient maps (of log intensity,
and of the intensity rank, which also ignores the camera's tone curve and holds up in very dark, noisy
frames). Consecutive files belong to one scene when either map correlates above SCENE_LINK. Measured on the
2,001 consecutive pairs: different scenes correlate at most 0.13 (both maps), frames of one scene at 0.19 or
more in at least one map (the darkest against the brightest frames); the threshold sits in that gap.

Alignment of a dark input with its target: the phase-correlation shift of their rank images at 128 px and the
correlation of their gradient maps after that shift; a pair is used only if the shift is at most MAX_SHIFT px
(at 128 px) and the correlation at least MIN_STRUCTURE.

`python -m training.sice_scenes` rebuilds the manifest from the images and prints the counts;
`--check` compares the committed manifest with the images instead.
"""
from __future__ import annotations

import argparse
import csv
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import data as data_mod

FOLDER = "sice_part1"
MANIFEST = Path(__file__).with_name("sice_scenes.csv")
FIELDS = ("file", "scene", "role", "mean", "clipped", "shift", "structure")
SCENE_LINK = 0.25  # structure correlation of consecutive files above which they are one scene
DARK_MAX = 0.2  # mean intensity of a dark input ...
DARK_RATIO = 0.5  # ... and at most this fraction of its target's
TARGET_RANGE = (0.35, 0.65)  # mean intensity of a target candidate (data_mod.WELL_EXPOSED)
CLIP_LEVEL = 250 / 255  # a pixel whose brightest channel reaches this is clipped
MAX_SHIFT = 1.0  # px at 128 px (4 px at 512)
MIN_STRUCTURE = 0.3


@dataclass(frozen=True)
class Frame:
    file: str
    mean: float
    clipped: float
    log_grad: np.ndarray  # normalized gradient maps of the 64 px thumbnail (flattened)
    rank_grad: np.ndarray
    rank128: np.ndarray  # 128 px intensity-rank image, for the alignment check


def _normalized(v: np.ndarray) -> np.ndarray:
    v = v - v.mean()
    return v / (np.linalg.norm(v) + 1e-12)


def _gradients(a: np.ndarray) -> np.ndarray:
    return _normalized(np.concatenate([np.diff(a, axis=1)[:-1].ravel(), np.diff(a, axis=0)[:, :-1].ravel()]))


def _rank(a: np.ndarray) -> np.ndarray:
    """Intensity ranks in [0, 1] (ties share the mean rank), the image's histogram equalized."""
    flat = a.ravel()
    order = np.argsort(flat, kind="stable")
    ranks = np.empty(flat.size)
    ranks[order] = np.arange(flat.size)
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse].reshape(a.shape) / max(flat.size - 1, 1)


def read_frame(path: Path) -> Frame:
    with Image.open(path) as im:
        im.draft("RGB", (128, 128))  # JPEG DCT scaling: decodes at 128 px directly
        rgb = np.asarray(im.convert("RGB").resize((128, 128), Image.BOX), dtype=np.float64) / 255.0
    gray = rgb.mean(-1)
    small = gray.reshape(64, 2, 64, 2).mean((1, 3))
    return Frame(file=path.name, mean=float(rgb.mean()), clipped=float((rgb.max(-1) >= CLIP_LEVEL).mean()),
                 log_grad=_gradients(np.log(small + 0.02)), rank_grad=_gradients(_rank(small)),
                 rank128=_rank(gray))


def link(a: Frame, b: Frame) -> float:
    """Structure correlation of two frames: the larger of the log- and rank-gradient correlations."""
    return max(float(a.log_grad @ b.log_grad), float(a.rank_grad @ b.rank_grad))


def group_scenes(frames: list[Frame]) -> list[list[Frame]]:
    """Consecutive frames whose structures correlate above SCENE_LINK, as lists (in file order)."""
    scenes = [[frames[0]]]
    for prev, cur in zip(frames, frames[1:]):
        if link(prev, cur) >= SCENE_LINK:
            scenes[-1].append(cur)
        else:
            scenes.append([cur])
    return scenes


def alignment(a: Frame, b: Frame) -> tuple[float, float]:
    """(shift in px at 128 px, gradient correlation after the shift) of two frames of one scene."""
    fa, fb = np.fft.fft2(a.rank128 - a.rank128.mean()), np.fft.fft2(b.rank128 - b.rank128.mean())
    cross = fa * np.conj(fb)
    corr = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    n = corr.shape[0]
    dy, dx = (dy + n // 2) % n - n // 2, (dx + n // 2) % n - n // 2
    shifted = np.roll(b.rank128, (dy, dx), axis=(0, 1))
    m = max(abs(dy), abs(dx)) + 1  # compare the part the roll did not wrap
    structure = float(_gradients(a.rank128[m:-m, m:-m]) @ _gradients(shifted[m:-m, m:-m]))
    return float(np.hypot(dy, dx)), structure


def scene_id(frames: list[Frame]) -> str:
    return f"s{int(Path(frames[0].file).stem):04d}"


def assign_roles(scene: list[Frame]) -> list[dict]:
    """Manifest rows of one scene: role target (at most one), low (aligned dark inputs), unaligned (dark
    inputs that fail the alignment check) or other."""
    lo, hi = TARGET_RANGE
    candidates = [f for f in scene if lo <= f.mean <= hi]
    # least clipped, then the one closest to mid-grey
    target = min(candidates, key=lambda f: (round(f.clipped, 3), abs(f.mean - 0.5))) if candidates else None
    rows = []
    for f in scene:
        row = {"file": f.file, "scene": scene_id(scene), "role": "other", "mean": round(f.mean, 4),
               "clipped": round(f.clipped, 4), "shift": "", "structure": ""}
        if f is target:
            row["role"] = "target"
        elif target is not None and f.mean < DARK_MAX and f.mean <= DARK_RATIO * target.mean:
            shift, structure = alignment(target, f)
            row |= {"shift": round(shift, 2), "structure": round(structure, 3)}
            row["role"] = "low" if shift <= MAX_SHIFT and structure >= MIN_STRUCTURE else "unaligned"
        rows.append(row)
    return rows


def sorted_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in data_mod.IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.name))


def build_manifest(folder: Path) -> list[dict]:
    frames = [read_frame(p) for p in sorted_files(folder)]
    return [row for scene in group_scenes(frames) for row in assign_roles(scene)]


def write_manifest(rows: list[dict], path: Path = MANIFEST) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def read_manifest(path: Path = MANIFEST) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@functools.cache
def manifest_rows(data_dir: Path | None = None) -> tuple[dict, ...]:
    """The manifest of data_dir's sice_part1: the committed one for ../shared/data, data_dir/sice_scenes.csv
    where a data folder carries its own, else built from the images now (a few seconds per 100 files)."""
    root = Path(data_dir).resolve() if data_dir is not None else data_mod.default_data_dir()
    if root == data_mod.default_data_dir():
        return tuple(read_manifest())
    own = root / MANIFEST.name
    if own.is_file():
        return tuple(read_manifest(own))
    folder = root / FOLDER
    if not folder.is_dir():
        return ()
    print(f"[training] grouping {folder} into scenes (no {own.name} there)", file=sys.stderr)
    return tuple({k: str(v) for k, v in r.items()} for r in build_manifest(folder))


def is_validation_scene(scene: str, fraction: float = data_mod.VALIDATION_FRACTION) -> bool:
    """The split of training.data: every file of a validation scene is a validation file there too."""
    return data_mod.in_validation_share(f"{FOLDER}/{scene}", fraction)


def scene_of(data_dir: Path | None = None) -> dict[str, str]:
    """{file name: scene id} of every file in data_dir's manifest."""
    return {r["file"]: r["scene"] for r in manifest_rows(data_dir)}


def real_pairs(data_dir=None, split: str = "train", fraction: float = data_mod.VALIDATION_FRACTION) -> list[tuple[Path, Path]]:
    """[(dark input, target)] of the train or validation scenes, paths under data_dir/sice_part1."""
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    root = (Path(data_dir) if data_dir is not None else data_mod.default_data_dir()) / FOLDER
    rows = manifest_rows(data_dir)
    targets = {r["scene"]: r["file"] for r in rows if r["role"] == "target"}
    want_val = split == "validation"
    return [(root / r["file"], root / targets[r["scene"]]) for r in rows
            if r["role"] == "low" and is_validation_scene(r["scene"], fraction) == want_val]


def counts(rows: list[dict], fraction: float = data_mod.VALIDATION_FRACTION) -> dict[str, int]:
    scenes = {r["scene"] for r in rows}
    paired = {r["scene"] for r in rows if r["role"] == "low"}
    lows = [r for r in rows if r["role"] == "low"]
    return {"files": len(rows), "scenes": len(scenes), "scenes with pairs": len(paired),
            "pairs": len(lows), "unaligned dark frames": sum(r["role"] == "unaligned" for r in rows),
            "validation scenes": sum(is_validation_scene(s, fraction) for s in paired),
            "validation pairs": sum(is_validation_scene(r["scene"], fraction) for r in lows)}


class RealPairBatches(data_mod.CropBatches):
    """Item s: the batch of step s as a (2, batch, 3, crop, crop) tensor [low, normal]: the same random crop
    (and flips) of a dark SICE frame and its scene's target."""

    def __init__(self, pairs, batch: int, crop: int, seed: int = 0, resize_long: int | None = None):
        super().__init__([p for p, _ in pairs], batch, crop, seed, resize_long)
        self.pairs = list(pairs)

    def __getitem__(self, step: int) -> torch.Tensor:
        crops = []
        for i, g in self.picks(step, len(self.pairs)):
            low, normal = (data_mod.load_rgb(p, self.resize_long) for p in self.pairs[i])
            crops.append(self.crop_and_flip(torch.stack([low, normal]), g))
        return torch.stack(crops, dim=1)


class MixedBatches(torch.utils.data.Dataset):
    """Item s: the real and the synthetic batch of step s concatenated along the batch dimension."""

    def __init__(self, real: RealPairBatches, synthetic: torch.utils.data.Dataset):
        self.real, self.synthetic, self.seed = real, synthetic, real.seed

    def __len__(self):
        return 2**62

    def set_shard(self, world) -> None:  # each part sharded: equal shards of both
        self.real.set_shard(world)
        self.synthetic.set_shard(world)

    def __getitem__(self, step: int) -> torch.Tensor:
        return torch.cat([self.real[step], self.synthetic[step]], dim=1)


def validation_pairs(pairs, resize_long: int | None = None, limit: int | None = None) -> list[torch.Tensor]:
    """Whole held-out pairs [(2, 1, 3, H, W) tensor [low, normal], ...] (the layout of degrade.validation_pairs)."""
    out = []
    for low, normal in list(pairs)[:limit] if limit else pairs:
        out.append(torch.stack([data_mod.load_rgb(low, resize_long), data_mod.load_rgb(normal, resize_long)])[:, None])
    return out


def contact_sheet(rows: list[dict], folder: Path, out_png: Path, scenes: int = 6) -> None:
    """Every frame of a few scenes, one scene per row, labelled with role and mean intensity."""
    from PIL import ImageDraw

    by_scene: dict[str, list[dict]] = {}
    for r in rows:
        by_scene.setdefault(r["scene"], []).append(r)
    chosen = [s for s in by_scene if any(r["role"] == "low" for r in by_scene[s])]
    chosen = data_mod.spread(chosen, scenes)
    tile, pad, label = 96, 3, 12
    ncol = max(len(by_scene[s]) for s in chosen)
    sheet = Image.new("RGB", (ncol * (tile + pad) + pad + 48, len(chosen) * (tile + label + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, s in enumerate(chosen):
        y = pad + i * (tile + label + pad)
        draw.text((pad, y + tile // 2), s, fill=(0, 0, 0))
        for j, r in enumerate(sorted(by_scene[s], key=lambda r: float(r["mean"]))):
            with Image.open(folder / r["file"]) as im:
                im.draft("RGB", (tile, tile))
                thumb = im.convert("RGB").resize((tile, tile), Image.BOX)
            x = 48 + pad + j * (tile + pad)
            sheet.paste(thumb, (x, y))
            colour = {"target": (0, 120, 0), "low": (0, 0, 200), "unaligned": (200, 0, 0)}.get(r["role"], (90, 90, 90))
            draw.text((x, y + tile), f"{r['role']} {float(r['mean']):.2f}", fill=colour)
    sheet.save(out_png, optimize=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.sice_scenes", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="folder holding sice_part1 (default ../shared/data)")
    p.add_argument("--check", action="store_true", help="compare the committed manifest with the images")
    p.add_argument("--sheet", type=Path, help="also write a contact sheet of a few scenes (PNG)")
    args = p.parse_args(argv)
    folder = (args.data or data_mod.default_data_dir()) / FOLDER
    rows = build_manifest(folder)
    rows = [{k: str(v) for k, v in r.items()} for r in rows]
    if args.check:
        old = read_manifest()
        same = [(a["file"], a["scene"], a["role"]) for a in old] == [(b["file"], b["scene"], b["role"]) for b in rows]
        print("manifest matches the images" if same else "manifest differs from the images", file=sys.stderr)
        return 0 if same else 1
    write_manifest(rows)
    if args.sheet:
        contact_sheet(rows, folder, args.sheet)
    for k, v in counts(rows).items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
