"""The 1080p end-to-end figure of docs/video.md: enhance_video (decode, zero_dce_pp as a sequence, encode) against
a plain decode + encode of the same clip with the same settings (the same code path with the enhancement left
out: RGB frames out of the decoder, H.264 yuv420p CRF 18 in, audio copied), in one run.

The clip: the bundled dark photo scaled to 1920 x 1080 with fresh noise in every frame, a slow pan, AAC audio.

usage: python tools/video_bench.py [--frames 60] [--denoise 0]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_clip(path: Path, frames: int) -> None:
    import av
    from PIL import Image

    photo = Image.open(ROOT / "lowlight_core" / "data" / "sample_dark.png").convert("RGB")
    base = np.asarray(photo.resize((2048, 1152), Image.Resampling.BICUBIC), dtype=np.float32)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt, v.options = 1920, 1080, "yuv420p", {"crf": "18"}
        a = c.add_stream("aac", rate=48000)
        for i in range(frames):
            crop = base[36:1116, 2 * i:2 * i + 1920]
            noisy = crop + rng.normal(size=crop.shape).astype(np.float32) * np.sqrt(0.5 * crop + 4)
            f = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8), format="rgb24")
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        samples = 48000 * frames // 30
        tone = (0.1 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48000)).astype(np.float32)
        for i in range(0, samples, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, i:i + 1024], format="flt", layout="mono")
            af.sample_rate, af.pts, af.time_base = 48000, i, Fraction(1, 48000)
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)


def plain(src: Path, dst: Path) -> int:
    """Decode + encode through enhance_video's own path with no enhancement."""
    import av

    from lowlight_core import video
    from lowlight_core.controls import VIDEO_QUALITY_DEFAULT

    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        return video._transcode(av, inp, stream, list(inp.streams.audio), src, str(dst), "mp4", "rgb24",
                                stream.frames, video.DEFAULT_CODEC, VIDEO_QUALITY_DEFAULT, None, lambda frames: frames)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--denoise", default="0")
    p.add_argument("--make", type=Path, help=argparse.SUPPRESS)  # (the child process that writes the clip)
    args = p.parse_args()
    if args.make:
        make_clip(args.make, args.frames)
        return
    from lowlight_core.controls import parse_denoise
    from lowlight_core.video import enhance_video

    denoise = parse_denoise(args.denoise)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip1080.mp4"
        # written by a child process: this one's peak RSS is then the enhancement's
        subprocess.run([sys.executable, __file__, "--make", str(src), "--frames", str(args.frames)], check=True)
        from lowlight_core import enhance

        enhance(np.zeros((1080, 1920, 3), np.uint8), device="cpu")  # loads the model before the clock starts
        print("load average before:", os.getloadavg())
        t0 = time.perf_counter()
        n0 = plain(src, Path(tmp) / "plain.mp4")
        t1 = time.perf_counter()
        n1 = enhance_video(src, Path(tmp) / "enhanced.mp4", device="cpu", denoise=denoise)
        t2 = time.perf_counter()
        print("load average after:", os.getloadavg())
        import resource

        print(f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    assert n0 == n1 == args.frames
    a, b = t1 - t0, t2 - t1
    print(f"1080p, {args.frames} frames: decode + encode {a:.1f} s ({args.frames / a:.1f} frames/s); "
          f"enhance_video zero_dce_pp denoise={denoise} {b:.1f} s ({args.frames / b:.1f} frames/s); ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
