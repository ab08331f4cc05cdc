"""`make demo`: enhance the bundled dark sample with the shipped Zero-DCE++ weights and write the result.

python -m lowlight_core.demo [--out DIR] [--model NAME] [--exposure E|auto]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lowlight_core.controls import DEFAULT_MODEL, EXPOSURE_DEFAULT, parse_exposure

SAMPLE = Path(__file__).parent / "data" / "sample_dark.png"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--exposure", type=parse_exposure, default=EXPOSURE_DEFAULT, help="E or auto (default)")
    args = parser.parse_args(argv)

    from lowlight_core import io, ops
    from lowlight_core.inference import enhance

    image, info = io.read_image(SAMPLE)
    start = time.perf_counter()
    result = enhance(image, model=args.model, exposure=args.exposure)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    enhanced_path = out / f"{SAMPLE.stem}_{args.model}.png"
    io.write_image(enhanced_path, result, info)
    io.write_image(out / f"{SAMPLE.stem}_side_by_side.png", np.concatenate([image, result], axis=1))
    print(f"input   {SAMPLE} ({image.shape[1]}x{image.shape[0]}, mean brightness {image.mean() / 255:.3f})")
    print(f"model   {args.model}, exposure target E={args.exposure}")
    print(f"ops     {ops.backend()} ({ops.backend_reason()})")
    print(f"output  {enhanced_path} (mean brightness {result.mean() / 255:.3f}), {seconds * 1e3:.0f} ms")
    print(f"compare {out / (SAMPLE.stem + '_side_by_side.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
