"""Score a trained image model (DLN, IQE DCGAN, EnlightenGAN) and write its model card.

Two held-out sets, neither ever trained on; every number comes from the inference path (`model.enhance`, full
resolution, output clamped to [0, 1] and saved as uint8):
- synthetic: every held-out well-exposed SICE image and its fixed degradation (training.degrade): PSNR / SSIM
  under the project's protocol (lowlight_core.metrics.PROTOCOL), the output values clipped at 255 where the
  target is not (blown highlights) and the colour shift (lowlight_core.metrics). The input itself is scored
  too, as the floor to beat.
The real photos and real pairs (training.real_eval) are scored by the caller and added to the card.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from lowlight_core.metrics import (PROTOCOL, ciede2000_uint8, clipped_beyond_uint8, color_shift_uint8, psnr_uint8, ssim_uint8,
                                   to_uint8)

from . import data as data_mod
from . import degrade, plots
from .evaluate import CARD_FIGURE_BYTES, LICENCE, card_header, clipped_percent, fmt, gray_world_deviation


def pair_scores(y: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """The reported numbers of one enhanced image y against its target, both (1, 3, H, W), as saved (uint8)."""
    a, b = to_uint8(y[0]), to_uint8(target[0])
    return {"psnr": psnr_uint8(a, b), "ssim": ssim_uint8(a, b), "clipped": clipped_beyond_uint8(a, b),
            "color_shift": color_shift_uint8(a, b), "ciede2000": ciede2000_uint8(a, b)}


def _mean(v) -> float:
    return float(np.mean(v)) if len(v) else math.nan


@torch.no_grad()
def evaluate(model, normals, device="cpu") -> dict:
    """{"synthetic": mean scores of the model, "synthetic_input": those of the unenhanced input}."""
    model.eval()
    rows, inputs, seconds = [], [], []
    for pair in degrade.validation_pairs(normals):
        low, normal = (t.to(device) for t in pair)
        t0 = time.perf_counter()
        y = model.enhance(low)
        seconds.append(time.perf_counter() - t0)
        rows.append(pair_scores(y, normal))
        inputs.append(pair_scores(low, normal))
    keys = ("psnr", "ssim", "clipped", "color_shift")
    return {
        "protocol": PROTOCOL,
        "synthetic": {"images": len(rows), **{k: _mean([r[k] for r in rows]) for k in keys},
                      "seconds_per_image": _mean(seconds)},
        "synthetic_input": {k: _mean([r[k] for r in inputs]) for k in keys},
    }


@torch.no_grad()
def card_figure(model, real_lows, out_png, device="cpu", max_bytes: int = CARD_FIGURE_BYTES) -> None:
    """Held-out real dark photos: input, enhanced."""
    model.eval()
    rows = []
    for p in real_lows:
        x = data_mod.load_rgb(p)[None].to(device)
        rows.append([x, model.enhance(x)])
    plots.image_grid(rows, ["input", "enhanced"], out_png, tile=240, max_bytes=max_bytes)


def model_card(name: str, meta: dict, ev: dict, weights_file, figure: str | None) -> str:
    t = meta.get("training", {})
    s, si = ev["synthetic"], ev["synthetic_input"]
    lines = card_header(name, meta, weights_file)
    val = t.get("final_validation", {})
    if ev.get("real_photos"):
        from .real_eval import card_section

        lines += card_section(ev["real_photos"], ev.get("real_photos_denoise_off"))
    lines += [
        "", "## Synthetic pairs (held out, never trained on)",
        f"### Synthetic pairs ({s['images']} held-out well-exposed SICE images, degraded once with fixed seeds "
        "by `training.degrade`)",
        "| | PSNR (dB) | SSIM | clipped at 255 where the target is not (% of values) | colour shift |",
        "|---|---|---|---|---|",
        f"| input (unenhanced) | {fmt(si['psnr'], 2)} | {fmt(si['ssim'])} | {fmt(si['clipped'], 2)} | "
        f"{fmt(si['color_shift'])} |",
        f"| **{name}** | **{fmt(s['psnr'], 2)}** | **{fmt(s['ssim'])}** | {fmt(s['clipped'], 2)} | "
        f"{fmt(s['color_shift'])} |",
        "",
        f"Protocol: {ev['protocol']}. Colour shift: `lowlight_core.metrics.color_shift_uint8` (mean abs "
        f"difference of the channel means divided by their average, output vs target). {fmt(s['seconds_per_image'], 2)} s per "
        "512 x 512 image on this CPU.",
    ]
    if val:
        lines += ["", f"At the end of training (first {t.get('val_images', '?')} held-out real pairs at "
                  f"{t.get('val_resize_long') or 'full'} px): "
                  + ", ".join(f"{k.removeprefix('val_')} {v:.4g}" for k, v in val.items())]
    if figure:
        lines += ["", f"![held-out real dark photos]({figure})", "", "Held-out real dark photos: input, enhanced."]
    lines += ["", "## Licence", LICENCE, ""]
    return "\n".join(lines)
