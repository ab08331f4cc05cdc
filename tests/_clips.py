"""Clips the video and sequence tests (and tools/video_figure.py) build themselves: nothing binary is committed.

`dark_clip`: a static camera on the bundled real dark photo (lowlight_core/data/sample_dark.png, area-reduced),
fresh Poisson-Gaussian sensor noise in every frame, a slow exposure ramp, one cut (to the photo turned upside
down and darker) and a dark square moving across the top rows. `write_clip` writes frames (and a tone as
audio) with PyAV.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "lowlight_core" / "data" / "sample_dark.png"
NOISE_A, NOISE_B = 0.002, 2e-5   # sensor-like noise: variance a * I + b (I in [0, 1])
RAMP = 0.3                       # exposure rises by 30 % over the clip
SQUARE, SQUARE_STEP, SQUARE_TOP = 8, 2, 4


def _reduce(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Area reduction of a float H x W x 3 image to h x w (crops to a multiple first)."""
    fy, fx = img.shape[0] // h, img.shape[1] // w
    img = img[:h * fy, :w * fx]
    return img.reshape(h, fy, w, fx, 3).mean((1, 3))


def dark_clip(frames: int = 32, size: tuple[int, int] = (72, 96), cut: int = 20, seed: int = 0, square: bool = True):
    """(uint8 T x H x W x 3 frames, square mask T x H x W bool). Frames before `cut` show scene A, from `cut` on
    scene B; square=False leaves the square out (a static scene: its frame means change only with the ramp and
    the noise)."""
    from PIL import Image

    photo = np.asarray(Image.open(SAMPLE).convert("RGB"), dtype=np.float64) / 255
    h, w = size
    scene_a = _reduce(photo, h, w)
    scene_b = _reduce(photo[::-1, ::-1], h, w) * 0.6
    rng = np.random.default_rng(seed)
    out = np.empty((frames, h, w, 3), np.uint8)
    mask = np.zeros((frames, h, w), bool)
    for t in range(frames):
        clean = (scene_a if t < cut else scene_b) * (1 + RAMP * t / max(frames - 1, 1))
        x0 = (SQUARE_STEP * t) % (w - SQUARE)
        if square:
            mask[t, SQUARE_TOP:SQUARE_TOP + SQUARE, x0:x0 + SQUARE] = True
            clean = clean.copy()
            clean[mask[t]] = 0.02  # a dark object on the brighter top of the photo
        noisy = clean + rng.normal(size=clean.shape) * np.sqrt(NOISE_A * clean + NOISE_B)
        out[t] = np.clip(np.rint(noisy * 255), 0, 255)
    return out, mask


def write_clip(path, frames: np.ndarray, rate: int = 25, codec: str = "libx264", audio: bool = True,
               options: dict | None = None) -> None:
    """Writes T x H x W x 3 uint8 frames as a clip (near-lossless), with a 440 Hz tone as AAC audio."""
    import av

    with av.open(str(path), "w", options=options or {}) as c:
        v = c.add_stream(codec, rate=rate)
        v.height, v.width = frames.shape[1:3]
        v.pix_fmt = "yuv420p"
        if codec == "libx264":
            v.options = {"crf": "1"}
        a = None
        if audio:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
        for f in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            samples = int(16000 * len(frames) / rate)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)).astype(np.float32)
            for i in range(0, samples, 1024):
                chunk = tone[i:i + 1024]
                frame = av.AudioFrame.from_ndarray(chunk[None], format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 16000, i, Fraction(1, 16000)
                for p in a.encode(frame):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)


def frame_means(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1).mean(1) / 255


def flicker(frames: np.ndarray, cut: int) -> float:
    """Mean absolute change of the frame mean (0-1 scale) between consecutive frames, the cut left out."""
    d = np.abs(np.diff(frame_means(frames)))
    return float(np.delete(d, cut - 1).mean())


def static_noise(frames: np.ndarray, mask: np.ndarray, lo: int, hi: int) -> float:
    """Std of the frame-to-frame difference over pixels the square never touches (frames lo..hi-1)."""
    static = ~mask.any(0)
    static[:SQUARE_TOP + SQUARE + 3] = False  # the square's rows and a margin
    d = np.diff(frames[lo:hi].astype(np.float64), axis=0)[:, static]
    return float(d.std())


def rotate_mp4(path, quarter_turns: int = 1) -> None:
    """Sets the display matrix of an MP4's first track (its tkhd box) to a rotation by 90 degrees x
    quarter_turns, as phones record it (PyAV 18 cannot write one)."""
    import struct

    one, w = 0x10000, 0x40000000
    matrices = {0: (one, 0, 0, 0, one, 0, 0, 0, w), 1: (0, one, 0, -one, 0, 0, 0, 0, w),
                2: (-one, 0, 0, 0, -one, 0, 0, 0, w), 3: (0, -one, 0, one, 0, 0, 0, 0, w)}
    data = bytearray(Path(path).read_bytes())
    identity = struct.pack(">9i", *matrices[0])
    at = data.find(identity, data.find(b"tkhd"))
    assert at > 0, "no track header matrix found"
    data[at:at + 36] = struct.pack(">9i", *matrices[quarter_turns % 4])
    Path(path).write_bytes(bytes(data))
