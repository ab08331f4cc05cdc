"""Training images: folders of photos under ../shared/data, the validation share (the split itself: training.split),
random crops.

Sampling is a pure function of (seed, step): the batch of step s is always the same images, crops and flips,
so a run killed and resumed from a checkpoint sees exactly the batches an uninterrupted run would have seen,
without saving any data-loader state.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

DEFAULT_FOLDERS = ("sice_part1", "lol_train_low")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
WELL_EXPOSED = (0.35, 0.65)
# Held-out share: of the SICE scenes (training/sice_scenes.csv; all exposures of a scene on one side) and of the
# other folders' files.
VALIDATION_FRACTION = 0.1


def default_data_dir() -> Path:
    """$LOWLIGHT_DATA, else ../shared/data from the working directory (the checkout's root in this project);
    never a path inside the installed package. The data is never copied into the repository."""
    return Path(os.environ.get("LOWLIGHT_DATA") or Path.cwd() / ".." / "shared" / "data").resolve()


def list_images(data_dir: str | os.PathLike | None = None, folders=DEFAULT_FOLDERS) -> list[Path]:
    """Sorted image files of `folders` under data_dir (default: default_data_dir())."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    paths = []
    for folder in folders:
        d = root / folder
        if not d.is_dir():
            raise FileNotFoundError(f"training data folder {d} not found (pass --data DIR holding {list(folders)})")
        paths += [p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if not paths:
        raise FileNotFoundError(f"no images in {[str(root / f) for f in folders]}")
    return sorted(paths, key=lambda p: (p.parent.name, p.name))


def in_validation_share(key: str, fraction: float = VALIDATION_FRACTION) -> bool:
    """Whether a split key falls into the held-out share; stable across machines and runs (sha1, not hash())."""
    h = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big")
    return h / 2.0**64 < fraction


def load_rgb(path: Path, resize_long: int | None = None) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]; if resize_long, resized (antialiased) so the long side is at most that."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if resize_long and max(im.size) > resize_long:
            s = resize_long / max(im.size)
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BICUBIC)
        a = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0)


def mean_intensity(path: Path) -> float:
    """Mean of all pixels and channels in [0, 1], measured on a <= 64 px thumbnail (fast, JPEG draft mode)."""
    with Image.open(path) as im:
        im.draft("RGB", (64, 64))
        im = im.convert("RGB")
        im.thumbnail((64, 64))
        return float(np.asarray(im, dtype=np.float32).mean() / 255.0)


def mean_intensities(paths, cache_file: str | os.PathLike | None = None) -> dict[str, float]:
    """{str(path): mean intensity}, cached as JSON in cache_file (keyed by path, size and mtime)."""
    cache = {}
    if cache_file and Path(cache_file).is_file():
        cache = json.loads(Path(cache_file).read_text())
    out, dirty = {}, False
    for p in paths:
        st = p.stat()
        key = f"{p}|{st.st_size}|{int(st.st_mtime)}"
        if key not in cache:
            cache[key], dirty = mean_intensity(p), True
        out[str(p)] = cache[key]
    if cache_file and dirty:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{cache_file}.tmp-{os.getpid()}")  # per process: torchrun starts several
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    return out


def well_exposed(paths, lo: float = WELL_EXPOSED[0], hi: float = WELL_EXPOSED[1], cache_file=None) -> list[Path]:
    """The images whose mean intensity lies in [lo, hi] (the "normal-light" domain)."""
    means = mean_intensities(paths, cache_file)
    return [p for p in paths if lo <= means[str(p)] <= hi]


def sice_normals(paths, cache_file=None) -> list[Path]:
    """The well-exposed sice_part1 images among paths: the normal-light side of pairs and of unpaired training."""
    return well_exposed([p for p in paths if p.parent.name == "sice_part1"], cache_file=cache_file)


def spread(items, k: int | None) -> list:
    """k items evenly spread over the sequence, first and last included (all of them if k is None or larger)."""
    items = list(items)
    if not k or len(items) <= k:
        return items
    return [items[round(i * (len(items) - 1) / max(k - 1, 1))] for i in range(k)]


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator owned by one training step. Streams: 0 the batch's picks, 1 the recipe's own randomness,
    2 + i the batch's item i."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step * 7919 + stream * 104_729) % (2**63))
    return g


class CropBatches(torch.utils.data.Dataset):
    """Item s is the training batch of step s: `batch` random images, each (optionally resized so its long
    side is resize_long, then) cropped at a random crop x crop window and randomly flipped.

    Images smaller than the crop are upscaled to fit first. Returns a (batch, 3, crop, crop) float tensor.
    """

    def __init__(self, paths, batch: int, crop: int, seed: int = 0, resize_long: int | None = None,
                 flips: bool = True):
        if not paths:
            raise ValueError("CropBatches: no images")
        self.paths, self.batch, self.crop = list(paths), batch, crop
        self.seed, self.resize_long, self.flips = seed, resize_long, flips
        self.shard = slice(None)  # the items of each batch this process makes (set_shard)

    def __len__(self):
        return 2**62  # indexed by step; the trainer decides how many steps to take

    def set_shard(self, world) -> None:
        """Make only this process's part of every batch (training.distributed.World)."""
        self.shard = world.shard(self.batch)

    def picks(self, step: int, count: int) -> list[tuple[int, torch.Generator]]:
        """(index in 0..count-1, generator) of each item of step's batch that this process makes. The indices
        are drawn for the whole batch and every item has a generator of its own, so an item is the same
        whichever process makes it and however many there are."""
        idx = torch.randint(count, (self.batch,), generator=step_generator(self.seed, step)).tolist()
        return [(idx[i], step_generator(self.seed, step, stream=2 + i)) for i in range(self.batch)[self.shard]]

    def __getitem__(self, step: int) -> torch.Tensor:
        return torch.stack([self._sample(self.paths[i], g) for i, g in self.picks(step, len(self.paths))])

    def _sample(self, path: Path, g: torch.Generator) -> torch.Tensor:
        return self.crop_and_flip(load_rgb(path, self.resize_long), g)

    def crop_and_flip(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """(..., H, W) -> (..., crop, crop): one random window and flips, the same for every leading index
        (so the two frames of a real pair stay aligned)."""
        c = self.crop
        h, w = img.shape[-2:]
        if h < c or w < c:  # upscale so the crop fits (keeps the aspect ratio)
            s = c / min(h, w)
            size = (max(c, round(h * s)), max(c, round(w * s)))
            flat = img.reshape(1, -1, h, w)
            img = F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(*img.shape[:-2], *size)
            h, w = size
        top = int(torch.randint(h - c + 1, (1,), generator=g))
        left = int(torch.randint(w - c + 1, (1,), generator=g))
        img = img[..., top:top + c, left:left + c]
        if self.flips:
            if torch.rand((), generator=g) < 0.5:
                img = img.flip(-1)
            if torch.rand((), generator=g) < 0.5:
                img = img.flip(-2)
        return img.contiguous()


class UnpairedBatches(torch.utils.data.Dataset):
    """Item s: (2, batch, 3, crop, crop) [low, normal], crops of unrelated low-light and well-exposed photos
    (EnlightenGAN's unpaired domains), each stream a CropBatches of its own."""

    def __init__(self, low_paths, normal_paths, batch: int, crop: int, seed: int = 0,
                 resize_long: int | None = None):
        self.low = CropBatches(low_paths, batch, crop, seed, resize_long)
        self.normal = CropBatches(normal_paths, batch, crop, seed + 1, resize_long)
        self.seed = seed

    def __len__(self):
        return 2**62

    def set_shard(self, world) -> None:
        self.low.set_shard(world)
        self.normal.set_shard(world)

    def __getitem__(self, step: int) -> torch.Tensor:
        return torch.stack([self.low[step], self.normal[step]])


def batch_loader(dataset: torch.utils.data.Dataset, start_step: int, stop_step: int, workers: int = 1):
    """Batches for steps start_step..stop_step-1, decoded in `workers` background processes (0: inline)."""
    steps = range(start_step, stop_step)
    # Its own generator: a DataLoader otherwise draws its worker seed from the global RNG, so a resumed run's
    # global RNG state would drift from an uninterrupted run's.
    return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=steps, num_workers=workers,
                                       prefetch_factor=2 if workers else None,
                                       generator=torch.Generator().manual_seed(dataset.seed))


def validation_images(paths, resize_long: int | None, limit: int | None = None) -> list[torch.Tensor]:
    """Whole validation images (1, 3, H, W), resized so the long side is at most resize_long."""
    paths = list(paths)[:limit] if limit else list(paths)
    return [load_rgb(p, resize_long)[None] for p in paths]
