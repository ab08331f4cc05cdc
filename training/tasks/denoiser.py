"""Training of the learned denoiser (lowlight_core.denoise_net): `python -m training.tasks.denoiser`.

It is not an enhancement model of the registry (training.run builds those), so it has this one short loop of
its own, with its recipe (RECIPE) here.

Data (synthetic pairs from real frames): clean = the well-exposed target frames of the SICE training scenes
(training.sice_scenes; validation scenes never seen). Each sample simulates a real dark capture and its
enhancement on a region of a clean frame: darkened by k (log-uniform in RECIPE.k_range), Poisson-Gaussian
noise var = a I + b with (a, b) one of the noise models estimate_noise measured on the real dark frames of the
training scenes (NOISE_MODELS_FILE, scaled by a log-uniform factor in RECIPE.noise_scale; a share
RECIPE.correlated_share of it blurred like demosaiced sensor noise), quantised to 8 bits,
JPEG-compressed with 4:2:0 chroma (PIL, quality in RECIPE.jpeg_quality) with probability RECIPE.jpeg_share,
multiplied back by k, clamped, and sometimes given a gamma tone (the curve models brighten non-linearly). The
noise model, the candidates and the noise map are what inference computes, on the whole region. A share
RECIPE.clean_share of the simulated samples are clean frames passed as they are (k = 1, no added noise): the
denoiser must leave a clean photo about unchanged. A share RECIPE.real_share of the regions comes instead from
the real SICE training pairs (real_regions): the dark frame enhanced by the default model at its reference's
brightness, the target the reference frame mapped into that enhancement's local tone and colour
(aligned_reference), so real sensor noise, demosaicing and JPEG are learned, not only their simulation.
Loss: L1 to the clean region. Adam with a cosine decay over the wall-time budget (RECIPE.minutes on ONE thread:
the machine is shared); `--init` fine-tunes shipped weights.
How the shipped weights were trained and what they measured: docs/denoise-learned.md.
"""
from __future__ import annotations

import argparse
import io
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lowlight_core import denoise_net
from lowlight_core.noise import estimate_noise
from lowlight_core.reference import box_mean

# estimate_noise on the 396 dark frames of the 163 training scenes (2026-12-06): the 5th/50th/95th
# percentiles of the std at their mean brightness are 0.00002 / 0.004 / 0.026; (a, b) pairs are drawn from
# this list (a, b clipped at 0; measured by `--measure`).
NOISE_MODELS_FILE = Path(__file__).with_name("denoiser_noise_models.csv")


@dataclass(frozen=True)
class Recipe:
    width: int = 16
    layers: int = 4
    batch: int = 16
    crop: int = 64
    region: int = 192           # the simulated dark capture (its noise estimated as inference does) ...
    crops_per_region: int = 4   # ... gives this many crops
    k_range: tuple = (4.0, 30.0)
    noise_scale: tuple = (0.5, 3.0)
    jpeg_share: float = 0.5
    jpeg_quality: tuple = (70, 95)
    gamma_share: float = 0.3
    gamma_range: tuple = (0.6, 1.0)
    correlated_share: float = 0.6     # noise blurred by a Gaussian of sigma in correlation_sigma (and rescaled to
    correlation_sigma: tuple = (0.5, 1.2)  # its std): demosaicing makes real sensor noise blotchy, not white
    clean_share: float = 0.1
    real_share: float = 0.0           # regions of the real SICE training pairs instead of a simulation (real_regions)
    real_model: str = "zero_dce_pp_paired"  # the enhancement those regions get (at their reference's brightness)
    align_radius: int = 8             # the reference mapped into the enhancement's tone: local linear fit radius
    lr: float = 2e-3
    lr_final: float = 1e-4
    minutes: float = 30.0
    seed: int = 0


RECIPE = Recipe()


def measure_noise_models(data_dir=None) -> list[tuple[float, float]]:
    from training import data as data_mod
    from training import sice_scenes

    out = []
    for low, _ in sice_scenes.real_pairs(data_dir, split="train"):
        m = estimate_noise(data_mod.load_rgb(low)[None])
        out.append((max(m.a, 0.0), max(m.b, 0.0)))
    return out


def read_noise_models() -> list[tuple[float, float]]:
    rows = NOISE_MODELS_FILE.read_text().split()[1:]
    return [tuple(float(v) for v in r.split(",")) for r in rows]


def clean_frames(data_dir=None) -> list[np.ndarray]:
    """uint8 H x W x 3 arrays: the target frame of every SICE training scene."""
    from training import data as data_mod
    from training import sice_scenes

    root = Path(data_dir) if data_dir is not None else data_mod.default_data_dir()
    files = [r["file"] for r in sice_scenes.manifest_rows(data_dir)
             if r["role"] == "target" and not sice_scenes.is_validation_scene(r["scene"])]
    frames = []
    for f in files:
        with Image.open(root / sice_scenes.FOLDER / f) as im:
            frames.append(np.asarray(im.convert("RGB")).copy())
    return frames


def _noise(shape, recipe: Recipe, rng: random.Random, g: torch.Generator) -> torch.Tensor:
    """Unit-variance noise of this shape: white, or with probability recipe.correlated_share blurred by a
    Gaussian (each channel alike) and divided by the kernel's L2 norm, so its std stays 1."""
    n = torch.randn(shape, generator=g)
    if rng.random() >= recipe.correlated_share:
        return n
    sigma = rng.uniform(*recipe.correlation_sigma)
    r = math.ceil(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma * sigma))
    k = k / k.sum()
    c = shape[1]
    n = F.conv2d(F.pad(n, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    n = F.conv2d(F.pad(n, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return n / (k.square().sum())  # separable: the 2-D kernel's L2 norm is the 1-D one's squared


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality, subsampling=2)  # 2: 4:2:0 chroma
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


def simulate(clean: np.ndarray, noise_models, recipe: Recipe, rng: random.Random, g: torch.Generator):
    """(dark input x, noisy enhanced y, clean target), float (1, 3, h, w), for one clean uint8 region."""
    c = torch.from_numpy(clean).permute(2, 0, 1)[None].float() / 255
    if rng.random() < recipe.clean_share:
        return c, c, c
    k = math.exp(rng.uniform(*map(math.log, recipe.k_range)))
    a, b = rng.choice(noise_models)
    s = math.exp(rng.uniform(*map(math.log, recipe.noise_scale)))
    dark = c / k
    noisy = dark + (s * (a * dark + b)).clamp_min(0).sqrt() * _noise(dark.shape, recipe, rng, g)
    q = (noisy.clamp(0, 1) * 255).round().to(torch.uint8)
    if rng.random() < recipe.jpeg_share:
        q = torch.from_numpy(_jpeg(q[0].permute(1, 2, 0).numpy(), rng.randint(*recipe.jpeg_quality))
                             ).permute(2, 0, 1)[None]
    x = q.float() / 255
    y, target = (x * k).clamp(0, 1), c
    if rng.random() < recipe.gamma_share:
        gamma = rng.uniform(*recipe.gamma_range)
        y, target = y.pow(gamma), target.pow(gamma)
    return x, y, target


def aligned_reference(y: torch.Tensor, ref: torch.Tensor, radius: int, eps: float = 1e-4) -> torch.Tensor:
    """The real reference frame in the enhancement's local tone and colour: per channel, y's local linear fit on
    ref (a guided filter of y with ref as guide, (B, 3, H, W)). Where y has signal the fit keeps ref's structure at
    y's brightness and colour; where y is noise alone (no correlation with ref) it gives y's local mean: a clean
    target of what y shows, whatever the two exposures' tone curves and colours."""
    ref, y = ref.double(), y.double()  # box means of products: float64 against cancellation in the variances
    mr, my = box_mean(ref, radius), box_mean(y, radius)
    a = (box_mean(ref * y, radius) - mr * my) / (box_mean(ref * ref, radius) - mr * mr + eps)
    b = my - a * mr
    return (box_mean(a, radius) * ref + box_mean(b, radius)).clamp(0, 1).float()


def real_regions(recipe: Recipe, data_dir=None) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(dark frame x, its enhancement y, the aligned reference) float (1, 3, H, W) for every real SICE training
    pair: real sensor noise, demosaicing and JPEG, enhanced by recipe.real_model at the reference's brightness
    (what auto exposure aims at) with no denoise."""
    from lowlight_core import enhance
    from training import sice_scenes
    from training.data import load_rgb

    out = []
    for dark, target in sice_scenes.real_pairs(data_dir, "train"):
        x, r = load_rgb(dark)[None], load_rgb(target)[None]
        y = enhance(x[0].permute(1, 2, 0).numpy(), model=recipe.real_model, exposure=float(r.mean()), denoise=0)
        y = torch.from_numpy(np.ascontiguousarray(y)).permute(2, 0, 1)[None]
        out.append((x, y, aligned_reference(y, r, recipe.align_radius)))
    return out


def batch(frames, noise_models, recipe: Recipe, rng: random.Random, g: torch.Generator, specs, real=()):
    """(candidates, noise maps, targets) of recipe.batch crops: each simulated region's noise model is
    estimated, and its candidates and map computed, on the whole region (as inference does on the photo)."""
    cands, maps, ts = [], [], []
    for _ in range(recipe.batch // recipe.crops_per_region):
        if real and rng.random() < recipe.real_share:
            x, y, t = rng.choice(real)
            H, W = x.shape[-2:]
            r = min(recipe.region, H, W)
            y0, x0, k = rng.randrange(H - r + 1), rng.randrange(W - r + 1), rng.randrange(4)
            x, y, t = (v[..., y0:y0 + r, x0:x0 + r].rot90(k, (2, 3)).contiguous() for v in (x, y, t))
        else:
            f = rng.choice(frames)
            H, W = f.shape[:2]
            r = min(recipe.region, H, W)
            y0, x0 = rng.randrange(H - r + 1), rng.randrange(W - r + 1)
            region = np.ascontiguousarray(np.rot90(f[y0:y0 + r, x0:x0 + r], rng.randrange(4)))
            x, y, t = simulate(region, noise_models, recipe, rng, g)
        noise = estimate_noise(x)
        a, b = noise.a, noise.b
        cs, m = denoise_net.candidates(x, y, a, b, specs), denoise_net.noise_map(x, y, a, b)
        for _ in range(recipe.crops_per_region):
            cy, cx = rng.randrange(r - recipe.crop + 1), rng.randrange(r - recipe.crop + 1)
            sl = (..., slice(cy, cy + recipe.crop), slice(cx, cx + recipe.crop))
            cands.append([c[sl] for c in cs]), maps.append(m[sl]), ts.append(t[sl])
    return [torch.cat(c) for c in zip(*cands)], torch.cat(maps), torch.cat(ts)


def train(out: Path, recipe: Recipe = RECIPE, data_dir=None, init: Path | None = None) -> Path:
    torch.set_num_threads(1)
    torch.manual_seed(recipe.seed)
    rng, g = random.Random(recipe.seed), torch.Generator().manual_seed(recipe.seed)
    frames, noise_models = clean_frames(data_dir), read_noise_models()
    real = real_regions(recipe, data_dir) if recipe.real_share > 0 else []
    model = denoise_net.Denoiser(recipe.width, recipe.layers)
    if init is not None:  # fine-tuning: start from these weights
        model.load_state_dict(denoise_net.load(init).state_dict())
    else:  # the head starts at zero: the untrained network is the candidates' plain mean
        torch.nn.init.zeros_(model.head.weight), torch.nn.init.zeros_(model.head.bias)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    budget, t0, step, avg = recipe.minutes * 60, time.time(), 0, None
    log = []
    while (elapsed := time.time() - t0) < budget:
        frac = elapsed / budget
        for group in opt.param_groups:
            group["lr"] = recipe.lr_final + 0.5 * (recipe.lr - recipe.lr_final) * (1 + math.cos(math.pi * frac))
        cands, m, t = batch(frames, noise_models, recipe, rng, g, model.specs, real)
        loss = F.l1_loss(model.blend(cands, m), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if step % 100 == 0:
            base = F.l1_loss(cands[0], t).item()
            log.append((step, round(elapsed / 60, 2), avg))
            print(f"step {step} {elapsed / 60:.1f} min: L1 {avg:.5f} (input {base:.5f})", file=sys.stderr, flush=True)
    meta = {"recipe": asdict(recipe), "steps": step, "wall_time_min": (time.time() - t0) / 60,
            "training_frames": len(frames), "noise_models": len(noise_models), "final_l1": avg,
            "device": f"CPU, 1 thread (torch {torch.__version__})", "log": log}
    path = out / "denoiser.pt"
    denoise_net.save(model, path, meta)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.tasks.denoiser", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/denoiser"))
    p.add_argument("--data", type=Path)
    p.add_argument("--minutes", type=float, default=RECIPE.minutes, help="training wall-time budget")
    p.add_argument("--init", type=Path, help="start from these denoiser weights (fine-tuning)")
    p.add_argument("--lr", type=float, default=RECIPE.lr, help="initial learning rate")
    p.add_argument("--real-share", type=float, default=RECIPE.real_share,
                   help="share of the regions taken from the real SICE training pairs")
    p.add_argument("--clean-share", type=float, default=RECIPE.clean_share,
                   help="share of the simulated regions left clean (the denoiser must leave a clean photo alone)")
    p.add_argument("--measure", action="store_true", help="re-measure the noise models of the dark training "
                                                          "frames into " + NOISE_MODELS_FILE.name + " and stop")
    args = p.parse_args(argv)
    if args.measure:
        rows = measure_noise_models(args.data)
        NOISE_MODELS_FILE.write_text("a,b\n" + "".join(f"{a:.6g},{b:.6g}\n" for a, b in rows))
        print(f"{len(rows)} noise models -> {NOISE_MODELS_FILE}")
        return 0
    from dataclasses import replace

    path = train(args.out, replace(RECIPE, minutes=args.minutes, lr=args.lr, real_share=args.real_share,
                         clean_share=args.clean_share), args.data, args.init)
    print(f"weights: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
