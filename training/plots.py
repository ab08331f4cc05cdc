"""Figures of a training run: loss curves from the CSV logs, and a labelled before/after image grid."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def read_csv(path) -> dict[str, np.ndarray]:
    """Columns of a CSV written by trainer.CsvLog as float arrays (empty dict if the file is missing)."""
    path = Path(path)
    if not path.is_file() or not path.stat().st_size:
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = {}
    for k in rows[0] if rows else []:
        try:
            cols[k] = np.array([float(r[k]) if r[k] != "" else np.nan for r in rows])
        except ValueError:
            continue  # non-numeric column
    return cols


def smooth(v: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first values average what exists so far)."""
    if window <= 1 or len(v) < 2:
        return v
    c = np.cumsum(np.insert(np.nan_to_num(v), 0, 0.0))
    n = np.minimum(np.arange(1, len(v) + 1), window)
    return (c[1:] - c[np.maximum(np.arange(1, len(v) + 1) - window, 0)]) / n


def plot_losses(train_csv, val_csv, out_png) -> None:
    """One panel per logged quantity: raw and smoothed training values, validation values as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = read_csv(train_csv), read_csv(val_csv)
    skip = {"step", "seconds", "step_s", "n"}
    names = [k for k in train if k not in skip] + [k for k in val if k not in skip and k not in train]
    if not names:
        raise ValueError(f"nothing to plot in {train_csv} / {val_csv}")
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        if name in train:
            s, v = train["step"], train[name]
            ax.plot(s, v, color="C0", alpha=0.25, lw=0.8)
            ax.plot(s, smooth(v, max(1, len(v) // 50)), color="C0", lw=1.5, label="train")
        if name in val:
            ax.plot(val["step"], val[name], "o-", color="C1", ms=3, lw=1, label="validation")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if name in train and np.all(train[name][np.isfinite(train[name])] > 0) and _wide_range(train[name]):
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    _atomic_savefig(fig, out_png)
    plt.close(fig)


def _wide_range(v: np.ndarray) -> bool:
    v = v[np.isfinite(v)]
    return len(v) > 1 and v.max() > 20 * max(v.min(), 1e-12)


def _atomic_savefig(fig, path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=100, format="png")
    os.replace(tmp, path)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    x = x.detach().float().cpu().reshape(-1, *x.shape[-2:])[:3]
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def image_grid(rows: list[list[torch.Tensor]], labels: list[str], out_png, tile: int = 224,
               max_bytes: int | None = None) -> None:
    """Save a grid (one row per image, one column per label) as PNG, each tile resized to `tile` px wide.

    With max_bytes the grid is written as a 256-colour PNG and shrunk until the file fits.
    """
    while True:
        img = _compose(rows, labels, tile)
        buf = io.BytesIO()
        if max_bytes:
            img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
                buf, "PNG", optimize=True)
        else:
            img.save(buf, "PNG", optimize=True)
        if not max_bytes or buf.tell() <= max_bytes or tile <= 64:
            break
        tile = int(tile * 0.85)
    if max_bytes and buf.tell() > max_bytes:
        raise ValueError(f"grid does not fit in {max_bytes} bytes even at {tile} px tiles")
    path = Path(out_png)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _compose(rows, labels, tile: int) -> Image.Image:
    pad, head = 4, 18
    tiles = [[Image.fromarray(to_uint8(x)) for x in row] for row in rows]
    tiles = [[t.resize((tile, max(1, round(t.height * tile / t.width))), Image.LANCZOS) for t in row]
             for row in tiles]
    heights = [max(t.height for t in row) for row in tiles]
    ncol = max(len(r) for r in tiles)
    W = ncol * (tile + pad) + pad
    H = head + sum(h + pad for h in heights) + pad
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(labels[:ncol]):
        draw.text((pad + j * (tile + pad) + 4, 3), label, fill=(0, 0, 0))
    y = head
    for row, h in zip(tiles, heights):
        for j, t in enumerate(row):
            canvas.paste(t, (pad + j * (tile + pad), y))
        y += h + pad
    return canvas
