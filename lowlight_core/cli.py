"""The `lowlight` command: enhance files and folders, evaluate models against references, list models.

    lowlight enhance INPUT... -o OUTDIR [--model NAME] [--iterations N] [--exposure E|auto] [--denoise S|auto]
                     [--device D] [--tile T] [--per-frame] [--video-codec C] [--quality CRF]
                     (images, and video clips: .mp4 .mov .mkv .avi .webm, through lowlight_core.video)
    lowlight eval --low DIR --high DIR [--model NAME ...] [--denoise S|auto] [--json FILE]
    lowlight models
    lowlight train RECIPE ...          (python -m training: writes only under its run folder)
    lowlight export RUN                (the one step that replaces shipped weights; keeps a backup)
    lowlight onnx MODEL -o FILE.onnx [--weights FILE]   (needs the [onnx] extra)

Each subcommand is an entry of SUBCOMMANDS (name -> help, argument builder, runner); `train` is added there.
Exit codes: 0 all done, 1 some file failed (the others were still processed), 2 bad arguments or setup.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .controls import VIDEO_EXTENSIONS
from .io import EXTENSIONS, image_format
from .video import is_video


class SetupError(Exception):
    """A problem with the arguments or the environment: reported once, exit code 2."""


def _error(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"lowlight: error: {message}", file=sys.stderr)  # tqdm.write keeps a progress bar intact


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    # Ranges are checked (and stated in the error) by lowlight_core.inference; controls is torch-free, so
    # --help stays fast.
    from .controls import (DENOISE_AUTO, DENOISE_DEFAULT, DENOISE_LEARNED, DENOISE_RANGE, EXPOSURE_AUTO,
                           EXPOSURE_DEFAULT, EXPOSURE_RANGE, ITERATIONS_DEFAULT, MAX_ITERATIONS, parse_denoise, parse_exposure)

    def argument(parse):
        def parsed(text):
            try:
                return parse(text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        return parsed

    p.add_argument("--iterations", type=int, default=ITERATIONS_DEFAULT,
                   help=f"curve steps, 1-{MAX_ITERATIONS} (default {ITERATIONS_DEFAULT})")
    p.add_argument("--exposure", type=argument(parse_exposure), default=EXPOSURE_DEFAULT, metavar="E|auto",
                   help=f"target exposure E (the result's mean brightness), {EXPOSURE_RANGE[0]}-{EXPOSURE_RANGE[1]}, "
                        f"or {EXPOSURE_AUTO} (predicted from the whole photo; default {EXPOSURE_DEFAULT})")
    p.add_argument("--denoise", type=argument(parse_denoise), default=DENOISE_DEFAULT, metavar="S|auto|learned",
                   help=f"noise-aware denoising strength {DENOISE_RANGE[0]:g}-{DENOISE_RANGE[1]:g}, or {DENOISE_AUTO} "
                        f"(from the photo's estimated noise and the enhancement's gain; default {DENOISE_DEFAULT}); 0: "
                        f"off; {DENOISE_LEARNED}: the learned denoiser (opt-in)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--tile", type=int, default=None,
                   help="tile size in pixels for full-resolution networks (default: automatic; 0: never tile)")


def _check_setup(args, models: list[str], weights: dict) -> str:
    """Fails fast, once, on bad controls, device, model names or missing weights; returns the device."""
    from .inference import check_controls, resolve_device
    from .models.registry import load_model

    try:
        check_controls(args.iterations, args.exposure, args.tile, args.denoise)
        device = resolve_device(args.device)
        for name in models:
            load_model(name, device=str(device), weights=weights.get(name))
    except (ValueError, TypeError, RuntimeError, FileNotFoundError) as e:
        raise SetupError(str(e)) from None
    return str(device)


def _reason(path: Path, e: Exception) -> str:
    message = str(e) or type(e).__name__
    return message if message.startswith(str(path)) else f"{path}: {message}"


# ---------------------------------------------------------------- lowlight enhance

def _enhance_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, video clips or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if needed)")
    from .controls import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (see `lowlight models`; default {DEFAULT_MODEL})")
    p.add_argument("--weights", type=Path, help="weights file to use instead of the shipped one")
    _add_model_arguments(p)
    p.add_argument("--suffix", default="", help="appended to each output file name before the extension")
    p.add_argument("--max-megapixels", type=float, default=200.0,
                   help="refuse larger images, a guard against decompression bombs (default 200)")
    p.add_argument("--workers", type=int, default=1,
                   help="threads decoding ahead of the model (0: decode, enhance, write one file after another; "
                        "default 1). Under torchrun each process takes its share of the files")
    p.add_argument("--resume", action="store_true",
                   help="skip the files that an earlier run finished with the same settings, as its manifest in "
                        "the output folder (.lowlight-done.*.jsonl) lists them: rerun the same command after an "
                        "interruption; a video clip is one unit")
    from .controls import VIDEO_QUALITY_DEFAULT, VIDEO_QUALITY_RANGE

    p.add_argument("--per-frame", action="store_true",
                   help="video: enhance every frame alone (default: curve maps and noise decided over time, "
                        "scene cuts reset them; with --denoise, static noise is also averaged over frames)")
    p.add_argument("--video-codec", default="h264",
                   help="video: FFmpeg encoder of the output (default h264, yuv420p), or 'source': the input's codec")
    p.add_argument("--quality", type=int, default=VIDEO_QUALITY_DEFAULT,
                   help=f"video: constant quality (CRF, {VIDEO_QUALITY_RANGE[0]}-{VIDEO_QUALITY_RANGE[1]}, lower is "
                        f"better; default {VIDEO_QUALITY_DEFAULT})")


def _check_enhance_arguments(args) -> None:
    """Arguments that argparse cannot check: exit 2 before any file is read."""
    mp = args.max_megapixels
    if not (math.isfinite(mp) and mp > 0):
        raise SetupError(f"--max-megapixels must be a positive number, got {mp}")
    if args.workers < 0:
        raise SetupError(f"--workers must be 0 or more, got {args.workers}")
    if any(c in args.suffix for c in ("/", "\\", "\0", os.sep)) or args.suffix in (".", ".."):
        raise SetupError(f"--suffix {args.suffix!r}: must not contain a path separator (it goes into file names)")
    from .controls import VIDEO_QUALITY_RANGE

    lo, hi = VIDEO_QUALITY_RANGE
    if not lo <= args.quality <= hi:
        raise SetupError(f"--quality must be in [{lo}, {hi}], got {args.quality}")


def _prepare_output(outdir: Path) -> None:
    """The output folder exists (created now) and takes files, else SetupError."""
    if outdir.exists() and not outdir.is_dir():
        raise SetupError(f"-o {outdir}: exists and is not a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=outdir):  # the one sure test of writability (ACLs, read-only mounts)
            pass
    except OSError as e:
        raise SetupError(f"-o {outdir}: cannot write there ({e.strerror or e})") from None


def _check_output_file(flag: str, path: Path) -> None:
    """A file the command will write at the end: its folder exists and takes files, else SetupError now,
    before any work (the file itself is not touched)."""
    if path.is_dir():
        raise SetupError(f"{flag} {path}: is a folder, expected a file name")
    if not path.parent.is_dir():
        raise SetupError(f"{flag} {path}: the folder {path.parent} does not exist")
    try:
        if path.exists():
            with open(path, "ab"):  # opens for writing, writes nothing
                pass
        else:
            with tempfile.TemporaryFile(dir=path.parent):
                pass
    except OSError as e:
        raise SetupError(f"{flag} {path}: cannot write there ({e.strerror or e})") from None


def _plan(inputs: list[str], outdir: Path, suffix: str):
    """[(source, destination)], a list of problems, and how many files of the input folders were left out as
    outputs of earlier runs; folders map to outdir by relative path."""
    from .batch import MANIFEST_GLOB, manifest_rows

    jobs, problems, earlier = [], [], 0
    outdir_resolved = outdir.resolve()
    for name in inputs:
        root = Path(name)
        if root.is_dir():
            # Earlier outputs are skipped only when the output folder lies inside this input folder; an
            # output folder at or above it (-o . for raw/) must not hide the inputs.
            nested = root.resolve() in outdir_resolved.parents
            files = [f for f in root.rglob("*") if f.is_file()]
            # what earlier runs wrote into this tree (-o raw, -o raw/sub), as their manifests list it, is
            # never an input again, whatever its name
            outputs = {out for m in files if m.match(MANIFEST_GLOB) for _, out in manifest_rows(m)}
            found = sorted(f for f in files if (f.suffix.lower() in EXTENSIONS or is_video(f))
                           and not (nested and outdir_resolved in f.resolve().parents))
            kept = [f for f in found if f.resolve() not in outputs]
            earlier += len(found) - len(kept)
            if not found:
                problems.append(f"{root}: no images or videos found ({', '.join(sorted(EXTENSIONS))}, "
                                f"{', '.join(VIDEO_EXTENSIONS)})")
            jobs += [(f, outdir / f.relative_to(root)) for f in kept]
        elif root.is_file():
            jobs.append((root, outdir / root.name))
        else:
            problems.append(f"{root}: no such file or folder")
    jobs = [(src, dst.with_name(dst.stem + suffix + dst.suffix)) for src, dst in jobs]
    return jobs, problems, earlier


def _refusal(dst: Path, target: Path, sources: set, taken: dict) -> str | None:
    if image_format(dst) is None and not is_video(dst):
        return f"unsupported file extension {dst.suffix!r} (use one of {sorted(EXTENSIONS)})"
    if target in sources:
        return f"refusing to overwrite an input file with the output {dst}"
    if target in taken:
        return f"output {dst} would overwrite the result of {taken[target]}"
    return None


def _enhance_run(args) -> int:
    from tqdm import tqdm

    from . import batch
    from .inference import enhance
    from .io import read_image, remove_stale_temps, write_image

    weights = {args.model: args.weights} if args.weights else {}
    _check_enhance_arguments(args)
    device = _check_setup(args, [args.model], weights)
    jobs, problems, earlier = _plan(args.inputs, args.output, args.suffix)
    _prepare_output(args.output)
    manifest = batch.Manifest(args.output, batch.shard_of_world()[0])
    for folder in {args.output} | {dst.parent for _, dst in jobs}:
        removed = remove_stale_temps(folder) if folder.is_dir() else []
        if removed:
            _error(f"removed {len(removed)} temp file(s) left in {folder} by a run that was killed")
    rank, world = batch.shard_of_world()
    # the whole plan is checked in every process, so a refusal does not depend on the sharding
    sources = {src.resolve() for src, _ in jobs}
    taken: dict[Path, Path] = {}
    valid = []
    for src, dst in jobs:
        target = dst.resolve()
        why = _refusal(dst, target, sources, taken)
        if why:
            problems.append(_reason(src, ValueError(why)))
        else:
            taken[target] = src
            valid.append((src, dst))
    settings = {"model": args.model, "weights": str(args.weights or ""), "exposure": args.exposure,
                "iterations": args.iterations, "tile": args.tile, "denoise": args.denoise}
    clips = any(is_video(d) for _, d in valid)
    if clips:  # (runs without clips keep the settings of earlier versions: their manifests still match)
        settings.update(per_frame=args.per_frame, video_codec=args.video_codec, quality=args.quality)
        _check_video_setup(args)
    settings = json.dumps(settings, sort_keys=True)
    skipped = batch.done_before(args.output, settings) if args.resume else set()
    mine = [(s, d) for s, d in valid[rank::world] if d.resolve() not in skipped]
    videos = [(s, d) for s, d in mine if is_video(d)]
    mine = [(s, d) for s, d in mine if not is_video(d)]
    if rank == 0:
        for p in problems:
            _error(p)
    failed, done = len(problems) if rank == 0 else 0, 0
    bar = tqdm(total=len(mine) + len(videos), desc="enhance" if world == 1 else f"enhance [{rank}/{world}]",
               unit="file" if videos else "image", disable=None)
    max_pixels = int(args.max_megapixels * 1e6)

    def write(dst, result, info):
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_image(dst, result, info)

    def on_done(src, dst):
        nonlocal done
        try:
            manifest.add(src, dst, settings)
        except OSError as e:
            on_error(src, OSError(f"written to {dst}, but not recorded in {manifest.path} ({e.strerror or e}): "
                                  "a later run may take it for an input, --resume does it again"))
            return
        done += 1
        bar.update(1)

    def on_error(src, e):
        nonlocal failed
        failed += 1
        _error(_reason(src, e))
        bar.update(1)

    with contextlib.closing(manifest), bar:
        batch.run(mine, lambda src: read_image(src, max_pixels=max_pixels),
                  lambda image: enhance(image, model=args.model, iterations=args.iterations, exposure=args.exposure,
                                        device=device, tile=args.tile, weights=args.weights, denoise=args.denoise),
                  write, args.workers, on_done, on_error)
        for src, dst in videos:
            try:
                _enhance_clip(args, device, src, dst)
            except Exception as e:
                on_error(src, e)
            else:
                on_done(src, dst)
    share = f" (process {rank} of {world}: {len(mine) + len(videos)} of them)" if world > 1 else ""
    n_skipped = len(valid[rank::world]) - len(mine) - len(videos)
    resumed = f"; {n_skipped} done before, skipped" if n_skipped else ""
    resumed += f"; {earlier} output(s) of earlier runs in the input folders left out" if earlier else ""
    print(f"lowlight: enhanced {done} of {len(jobs)} {'files' if clips else 'images'} into {args.output}{share}"
          f"{resumed}"
          + (f"; {failed} problem(s), see above" if failed else ""), file=sys.stderr)
    return 1 if failed or not jobs else 0


def _check_video_setup(args) -> None:
    from .video import require_av

    try:
        av = require_av()
        if args.video_codec != "source":
            av.codec.Codec(args.video_codec, "w")
    except ImportError as e:
        raise SetupError(str(e)) from None
    except Exception as e:  # av's UnknownCodecError
        raise SetupError(f"--video-codec {args.video_codec!r}: no such FFmpeg encoder ({e})") from None


def _enhance_clip(args, device: str, src: Path, dst: Path) -> None:
    """One clip, with its own progress bar (frames per second)."""
    from tqdm import tqdm

    from .video import enhance_video

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(desc=src.name, unit="frame", leave=False, disable=None) as bar:
        def progress(done, expected):
            if expected and bar.total != expected:
                bar.total = expected
            bar.update(done - bar.n)

        enhance_video(src, dst, model=args.model, iterations=args.iterations, exposure=args.exposure, device=device,
                      tile=args.tile, weights=args.weights, denoise=args.denoise, temporal=not args.per_frame,
                      codec=args.video_codec, quality=args.quality, progress=progress)


# ---------------------------------------------------------------- lowlight eval

INPUT_BASELINE = "input"  # pseudo-model: score the low-light image itself
METRICS = ("psnr", "ssim", "clipped", "color_shift")
METRICS_NOTE = ("clip%: output values at 255 where the reference is below 255 (blown highlights); cast: colour "
                "shift, mean abs difference of the channel means over their average, output vs reference; dE00: "
                "mean CIEDE2000 against the reference after scaling the output to the reference's mean brightness")


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--low", required=True, type=Path, help="folder of low-light images")
    p.add_argument("--high", type=Path, help="folder of references, paired by relative path and file stem (the "
                                             "extension may differ); without it only the real-photo checks "
                                             "against each input are scored")
    p.add_argument("--model", action="append", metavar="NAME",
                   help=f"model to score (repeat for several; '{INPUT_BASELINE}' scores the unenhanced input); "
                        "default: the input and every model whose weights are present")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file for a model instead of the shipped one (repeatable)")
    _add_model_arguments(p)
    p.add_argument("--json", type=Path, help="also write all numbers to this JSON file")


def _pairs(low: Path, high: Path):
    """[(key, low file, high file or None)], keyed by relative path without extension."""
    def index(folder):
        files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in EXTENSIONS)
        return {f.relative_to(folder).with_suffix("").as_posix(): f for f in files}

    for name, folder in (("--low", low), ("--high", high)):
        if folder is not None and not folder.is_dir():
            raise SetupError(f"{name} {folder}: not a folder")
    lows, highs = index(low), (index(high) if high is not None else None)
    if not lows:
        raise SetupError(f"--low {low}: no images found")
    return [(key, f, highs.get(key) if highs is not None else None) for key, f in lows.items()]


def _color(image):
    """Colour channels only (alpha is not scored), as uint8."""
    from .io import to_uint8

    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[:, :, :-1]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return to_uint8(image)


def _eval_run(args) -> int:
    from tqdm import tqdm

    from .inference import enhance
    from .io import read_image
    from .metrics import (PROTOCOL, REAL_PHOTO_NOTE, ciede2000_uint8, clipped_beyond_uint8, color_shift_uint8,
                          psnr_uint8, real_photo_scores, ssim_uint8)
    from .models.registry import has_weights, list_models

    if args.json is not None:
        _check_output_file("--json", args.json)
    weights = {}
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SetupError(f"--weights expects NAME=PATH, got {item!r}")
        weights[name] = Path(path)
    models = args.model or [INPUT_BASELINE] + [m.name for m in list_models()
                                               if has_weights(m.name) or m.name in weights]
    models = list(dict.fromkeys(models))  # drop repeats, keep order
    args.device = _check_setup(args, [m for m in models if m != INPUT_BASELINE], weights)
    pairs = _pairs(args.low, args.high)

    scores: dict[str, dict[str, dict[str, float]]] = {}
    failed = []
    for key, low_file, high_file in tqdm(pairs, desc="eval", unit="image", disable=None):
        try:
            if high_file is None and args.high is not None:
                raise ValueError(f"no reference for it in {args.high}")
            low, _ = read_image(low_file)
            low_rgb = _color(low)
            high = _color(read_image(high_file)[0]) if high_file is not None else None
            if high is not None and low_rgb.shape != high.shape:
                raise ValueError(f"shape {low.shape} does not match the reference {high_file} ({high.shape})")
            row = {}
            for name in models:
                out = low if name == INPUT_BASELINE else enhance(
                    low, model=name, iterations=args.iterations, exposure=args.exposure, device=args.device,
                    tile=args.tile, weights=weights.get(name), denoise=args.denoise)
                out = _color(out)
                row[name] = {} if high is None else {
                    "psnr": psnr_uint8(out, high), "ssim": ssim_uint8(out, high),
                    "clipped": clipped_beyond_uint8(out, high),
                    "color_shift": color_shift_uint8(out, high) if out.ndim == 3 else math.nan,
                    "ciede2000": ciede2000_uint8(out, high) if out.ndim == 3 else math.nan}
                if out.ndim == 3:  # the real-photo checks need colour
                    row[name]["photo"] = real_photo_scores(low_rgb, out)
            scores[key] = row
        except Exception as e:
            failed.append(key)
            _error(_reason(low_file, e))

    means = {name: _means([scores[k][name] for k in scores]) for name in models}
    _print_table(models, scores, means, args, PROTOCOL)
    if args.json:
        report = {
            "protocol": PROTOCOL, "metrics_note": METRICS_NOTE, "photo_note": REAL_PHOTO_NOTE,
            "settings": {"iterations": args.iterations, "exposure": args.exposure, "denoise": args.denoise,
                         "device": args.device,
                         "tile": args.tile, "weights": {k: str(v) for k, v in weights.items()}},
            "low": str(args.low), "high": str(args.high), "models": models,
            "images": {k: {m: _json_numbers(r) for m, r in row.items()} for k, row in scores.items()},
            "mean": {m: _json_numbers(r) for m, r in means.items()},
            "failed": failed,
        }
        try:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as e:
            _error(f"--json {args.json}: the report could not be written ({e.strerror or e})")
            return 1
    return 1 if failed else 0


def _means(rows: list[dict]) -> dict:
    """Mean of each number over the rows that have it (a gray image has no colour cast: NaN is skipped);
    nested dicts are averaged key by key."""
    out = {}
    for key in dict.fromkeys(k for r in rows for k in r):
        vals = [r[key] for r in rows if key in r]
        if isinstance(vals[0], dict):
            out[key] = _means(vals)
        else:
            vals = [v for v in vals if not math.isnan(v)]
            out[key] = sum(vals) / len(vals) if vals else math.nan
    return out


def _json_numbers(row: dict) -> dict:
    """JSON has no inf/nan (PSNR of identical images is inf): those become null."""
    return {k: _json_numbers(v) if isinstance(v, dict) else (v if math.isfinite(v) else None) for k, v in row.items()}


def _print_table(models, scores, means, args, protocol) -> None:
    from .metrics import REAL_PHOTO_NOTE

    print(f"Protocol: {protocol}; {METRICS_NOTE}")
    print(f"Settings: iterations={args.iterations} exposure={args.exposure} denoise={args.denoise} "
          f"device={args.device} "
          f"({len(scores)} images scored)")
    if args.high is not None:
        width = max([len("mean")] + [len(k) for k in scores]) + 2
        col = max(30, max(len(m) for m in models) + 2)
        print(" " * width + "".join(m.rjust(col) for m in models))
        print(" " * width + "".join("PSNR dB   SSIM  clip%   cast   dE00".rjust(col) for _ in models))

        def line(label, row):
            cells = "".join(f"{row[m]['psnr']:7.2f}  {row[m]['ssim']:.4f} {row[m]['clipped']:6.2f}  "
                            f"{row[m]['color_shift']:.3f} {row[m]['ciede2000']:6.2f}".rjust(col) for m in models)
            print(label.ljust(width) + cells)

        for key, row in scores.items():
            line(key, row)
        print("-" * (width + col * len(models)))
        line("mean", means)
    photo = [m for m in models if "photo" in means[m]]
    if photo:
        print(f"\nReal-photo checks against each input (means): {REAL_PHOTO_NOTE}")
        col = max(len(m) for m in photo) + 2
        print("".ljust(col) + "brightness   clip%  colour shift  saturation  noise %")
        for m in photo:
            q = {k: (f"{v:.{2 if k in ('clipped', 'noise') else 3}f}" if math.isfinite(v) else "–")
                 for k, v in means[m]["photo"].items()}  # nan: e.g. no flat block in a tiny image
            print(m.ljust(col) + f"{q['brightness']:>10} {q['clipped']:>7} {q['color_shift']:>13} "
                  f"{q['saturation']:>11} {q['noise']:>8}")


# ---------------------------------------------------------------- lowlight models

def _models_arguments(p: argparse.ArgumentParser) -> None:
    pass


def _models_run(args) -> int:
    from .models.registry import has_weights, list_models, load_model, weights_path

    rows = []
    for m in list_models():
        present = has_weights(m.name)
        try:  # count the parameters of what would run: the shipped file's config when present
            net = load_model(m.name) if present else m.build()
            params = f"{sum(p.numel() for p in net.parameters()):,}"
        except Exception as e:
            params = f"? ({type(e).__name__})"
        weights = "none needed" if m.weights is None else (
            "present" if present else f"missing ({weights_path(m.name).name})")
        controls = ", ".join(sorted(m.controls)) or "-"
        rows.append((m.name, m.kind, params, controls, weights, m.description))
    header = ("name", "kind", "params", "controls", "weights", "description")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
    for r in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    from . import ops

    print(f"\nops backend: {ops.backend()} ({ops.backend_reason()})")
    return 0


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("train_args", nargs=argparse.REMAINDER, metavar="RECIPE ...",
                   help="training arguments (`lowlight train` alone prints them)")


def _training_command(name: str):
    """A command of the training layer (above the core): reached through the entry point it registers, never
    imported, so the core works without it; torch and the trainer load only for this command."""
    from importlib.metadata import entry_points

    found = entry_points(group="lowlight.commands", name=name)
    if not found:
        raise SetupError("training is not installed (the package lowlight_training of napari-lowlight); "
                         "install it with: pip install 'napari-lowlight[train]'")
    try:
        return next(iter(found)).load()
    except ImportError as e:
        raise SetupError(f"training cannot start: {e}; install its dependencies with: "
                         "pip install 'napari-lowlight[train]'") from e


def _train_run(args: argparse.Namespace) -> int:
    return _training_command("train")(args.train_args or ["--help"]) or 0


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN", help="training run folder (its weights/<model>.pt, .md, .png) "
                                                         "or a weights file with its card beside it")


def _export_run(args: argparse.Namespace) -> int:
    export_run = _training_command("export")
    try:
        export_run(args.run_dir)
    except (ValueError, FileNotFoundError) as e:
        raise SetupError(str(e)) from None
    return 0


def _onnx_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a registered model (`lowlight models`)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.onnx", help="the ONNX file to write")
    p.add_argument("--weights", type=Path, default=None, help="a weights file instead of the shipped one")


def _onnx_run(args: argparse.Namespace) -> int:
    _check_output_file("-o", args.output)  # before the export's minute of tracing
    try:
        from .onnx_export import export_onnx

        path = export_onnx(args.model, args.output, weights=args.weights)
    except (ImportError, ValueError, FileNotFoundError) as e:
        raise SetupError(str(e)) from None
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------- dispatch

@dataclass(frozen=True)
class Subcommand:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {
    "enhance": Subcommand("enhance image files or folders into an output folder", _enhance_arguments, _enhance_run),
    "eval": Subcommand("PSNR/SSIM of models on paired low/high folders", _eval_arguments, _eval_run),
    "models": Subcommand("list the models, their parameters, controls and weights", _models_arguments, _models_run),
    "train": Subcommand("train a model: lowlight train RECIPE [--config cpu|gpu] ... (needs the [train] extra)",
                        _train_arguments, _train_run),
    "export": Subcommand("replace the shipped weights, card and figure of a model with a training run's "
                         "(the old files are kept in lowlight_core/weights/backup/)", _export_arguments, _export_run),
    "onnx": Subcommand("export a model to one ONNX file (inputs image, exposure, iterations; output enhanced; "
                       "needs the [onnx] extra)", _onnx_arguments, _onnx_run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lowlight", description="Low-light image enhancement.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SetupError as e:
        _error(str(e))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
