"""The before/after figure of docs/video.md: a static-camera clip made from the bundled dark photo (fresh
sensor noise in every frame, a slow exposure ramp, one cut, a dark square moving across the top; the same
clip as tests/test_sequence.py, built by tests/_clips.py) enhanced frame by frame with `enhance` and as a
sequence with `enhance_sequence`, both with zero_dce_pp and denoise 'auto'.

Top: the frame means over time (input, per-frame, sequence). Bottom: a static crop over six consecutive frames,
per-frame above sequence (grain that changes from frame to frame is what flickers in playback).

usage: python tools/video_figure.py [--out docs/video.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CUT = 20
CROP = (slice(36, 72), slice(48, 96))  # a static region below the square's rows
FRAMES = range(8, 14)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "video.png")
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from _clips import dark_clip, flicker, frame_means, static_noise
    from lowlight_core import enhance, enhance_sequence

    frames, mask = dark_clip(cut=CUT)
    per = np.stack([enhance(f, denoise="auto", device="cpu") for f in frames])
    seq = enhance_sequence(frames, denoise="auto", device="cpu")
    static, _ = dark_clip(cut=CUT, square=False)
    per_s = np.stack([enhance(f, denoise="auto", device="cpu") for f in static])
    seq_s = enhance_sequence(static, denoise="auto", device="cpu")
    fl = flicker(seq_s, CUT) / flicker(per_s, CUT)
    noise = static_noise(seq_s, mask, 2, CUT - 2) / static_noise(per_s, mask, 2, CUT - 2)

    fig = plt.figure(figsize=(9, 6.2), dpi=110)
    ax = fig.add_axes([0.08, 0.55, 0.88, 0.38])
    t = np.arange(len(frames))
    ax.plot(t, 3 * frame_means(static), "k.-", label="input (x 3)", alpha=0.5, markersize=3)
    ax.plot(t, frame_means(per_s), "o-", color="tab:red", markersize=3, label="enhance, frame by frame")
    ax.plot(t, frame_means(seq_s), "o-", color="tab:blue", markersize=3, label="enhance_sequence")
    ax.axvline(CUT - 0.5, color="gray", ls=":")
    ax.text(CUT - 0.3, ax.get_ylim()[0] + 0.01, "cut", color="gray")
    ax.set_xlabel("frame")
    ax.set_ylabel("frame mean (0-1)")
    ax.set_title(f"zero_dce_pp, denoise auto, static scene with an exposure ramp: flicker {fl:.2f}x, "
                 f"static noise {noise:.2f}x of frame by frame", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")

    rows = [("frame by frame", per), ("sequence", seq)]
    lo, hi = np.percentile(per[list(FRAMES)][(slice(None), *CROP)], (2, 98))  # one stretch for all: grain shows
    for r, (name, out) in enumerate(rows):
        for k, i in enumerate(FRAMES):
            a = fig.add_axes([0.08 + k * 0.148, 0.25 - r * 0.22, 0.14, 0.2])
            a.imshow(np.clip((out[i][CROP] - lo) / (hi - lo), 0, 1), interpolation="nearest")
            a.set_xticks([])
            a.set_yticks([])
            if r == 0:
                a.set_title(f"frame {i}", fontsize=8, pad=2)
            if k == 0:
                a.set_ylabel(name, fontsize=8)
    fig.text(0.08, 0.462, "a static crop over consecutive frames (enlarged, contrast stretched): the grain that "
             "changes from frame to frame", fontsize=9)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"flicker ratio {fl:.3f}, static noise ratio {noise:.3f} -> {args.out}")


if __name__ == "__main__":
    main()
