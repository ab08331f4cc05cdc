"""The real-photo evaluation used by every model card, docs/real-eval.md and docs/real-photos.png.

Held out (never trained on; the scene split of training.sice_scenes / training.split):
- real pairs: every aligned dark frame of the validation SICE scenes and its scene's well-exposed target:
  PSNR / SSIM under the project's protocol (lowlight_core.metrics.PROTOCOL);
- real dark photos without reference: the same dark SICE frames and the held-out `lol_train_low` photos:
  brightness, clipped %, colour shift, saturation ratio and flat-region noise against the photo's own input
  (lowlight_core.metrics.real_photo_scores, REAL_PHOTO_NOTE).
Every number comes from the inference path users get (`lowlight_core.enhance` on the uint8 photo, the default E
and iterations for the curve models), so `lowlight eval` on the folders written by `--write` gives the same.

    python -m training.real_eval --write runs/real_val      # low/, high/ (pairs) and dark/ (LOL) as PNG
    python -m training.real_eval --models all --table docs/real-eval.md --sheet docs/real-photos.png \
        --old-defaults-column zero_dce_pp
    python -m training.real_eval --models zero_dce_pp dln --denoise auto --json runs/denoise_auto.json
    python -m training.real_eval --denoise-crop docs/denoise-crop.png     # 100 % crops, denoise off / auto
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lowlight_core.controls import (DEFAULT_MODEL, DENOISE_AUTO, DENOISE_DEFAULT, DENOISE_LEARNED, EXPOSURE_DEFAULT,
                                   ITERATIONS_DEFAULT, parse_denoise)
from lowlight_core.metrics import (PROTOCOL, REAL_PHOTO_NOTE, ciede2000_uint8, clipped_beyond_uint8, psnr_uint8,
                                   real_photo_scores, ssim_uint8)

from . import data as data_mod
from . import sice_scenes
from .split import is_validation

PAIR_KEYS = ("psnr", "ssim", "clipped_ref", "ciede2000", "exposure_error")
PHOTO_KEYS = ("brightness", "clipped", "color_shift", "saturation", "noise")
SHEET_PHOTOS = 8


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def held_out(data_dir=None, fraction: float = data_mod.VALIDATION_FRACTION) -> tuple[list, list[Path]]:
    """(real pairs [(dark, target)], held-out LOL low-light photos)."""
    pairs = sice_scenes.real_pairs(data_dir, "validation", fraction)
    lol = data_mod.list_images(data_dir, ("lol_train_low",))
    return pairs, [p for p in lol if is_validation(p, fraction)]


def _mean(rows: list[dict], key: str) -> float:
    v = [r[key] for r in rows if math.isfinite(r[key])]
    return float(np.mean(v)) if v else math.nan


def exposure_error(y: np.ndarray, ref: np.ndarray) -> float:
    """|mean brightness of y - the reference frame's|, in [0, 1]: how far the exposure is from the real one."""
    return abs(float(y.mean()) - float(ref.mean())) / 255.0


def evaluate(enhance_fn, data_dir=None, fraction: float = data_mod.VALIDATION_FRACTION,
             exposure_from_reference: bool = False) -> dict:
    """Scores of enhance_fn (uint8 (H, W, 3) -> uint8 (H, W, 3)) on the held-out real pairs and photos.
    exposure_from_reference: each pair is enhanced with enhance_fn(x, exposure=the reference's mean brightness),
    the E an ideal automatic exposure would pick (the photos without a reference keep enhance_fn's own E).

    {"pairs": {...means}, "photos": {...means over the SICE dark frames and LOL photos}, "sice", "lol"
    (the photo means of each source), "input" (the same numbers for the unenhanced input), counts, seconds}."""
    pairs, lol = held_out(data_dir, fraction)
    pair_rows, in_rows, sice_rows, lol_rows, lol_in, ref_rows = [], [], [], [], [], []
    t0 = time.perf_counter()
    for dark, target in pairs:
        x, ref = read_rgb(dark), read_rgb(target)
        y = enhance_fn(x, exposure=float(ref.mean()) / 255) if exposure_from_reference else enhance_fn(x)
        pair_rows.append({"psnr": psnr_uint8(y, ref), "ssim": ssim_uint8(y, ref),
                          "clipped_ref": clipped_beyond_uint8(y, ref), "ciede2000": ciede2000_uint8(y, ref),
                          "exposure_error": exposure_error(y, ref)})
        # the input's ciede2000 is what keeping the input's colour scores (brightness matched to the reference)
        in_rows.append({"psnr": psnr_uint8(x, ref), "ssim": ssim_uint8(x, ref), "clipped_ref": 0.0,
                        "ciede2000": ciede2000_uint8(x, ref), "exposure_error": exposure_error(x, ref),
                        **real_photo_scores(x, x)})
        sice_rows.append(real_photo_scores(x, y))
        ref_rows.append(real_photo_scores(x, ref))  # what the real well-exposed frame itself scores
    for path in lol:
        x = read_rgb(path)
        lol_rows.append(real_photo_scores(x, enhance_fn(x)))
        lol_in.append(real_photo_scores(x, x))
    photos = sice_rows + lol_rows
    return {
        "pairs": {k: _mean(pair_rows, k) for k in PAIR_KEYS},
        "photos": {k: _mean(photos, k) for k in PHOTO_KEYS},
        "sice": {k: _mean(sice_rows, k) for k in PHOTO_KEYS},
        "lol": {k: _mean(lol_rows, k) for k in PHOTO_KEYS},
        "input": {**{k: _mean(in_rows, k) for k in PAIR_KEYS},
                  **{k: _mean(in_rows + lol_in, k) for k in PHOTO_KEYS}},
        "reference": {k: _mean(ref_rows, k) for k in PHOTO_KEYS},
        "worst_photo": {"color_shift": max((r["color_shift"] for r in photos), default=math.nan),
                        "clipped": max((r["clipped"] for r in photos), default=math.nan)},
        "counts": {"pairs": len(pairs), "scenes": len({t for _, t in pairs}), "sice_dark": len(sice_rows),
                   "lol": len(lol_rows)},
        "seconds": time.perf_counter() - t0,
        "protocol": PROTOCOL, "note": REAL_PHOTO_NOTE,
    }


def model_enhancer(name: str, weights=None, exposure=EXPOSURE_DEFAULT, iterations: int = ITERATIONS_DEFAULT,
                   denoise=DENOISE_DEFAULT):
    from lowlight_core import enhance

    def enhance_fn(x, exposure=exposure):
        return enhance(x, model=name, exposure=exposure, iterations=iterations, device="cpu", weights=weights,
                       denoise=denoise)
    return enhance_fn


def fmt(v, nd=3) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{nd}f}"


def table_rows(results: dict[str, dict]) -> list[str]:
    """Markdown table: one row per model (and the input), real pairs then real photos."""
    lines = ["| model | PSNR (dB) | SSIM | CIEDE2000 | exposure error | brightness | clipped beyond input (%) "
             "| colour shift | saturation ratio | flat noise (%) |", "|---|---|---|---|---|---|---|---|---|---|"]
    first = next(iter(results.values()))
    i = first["input"]
    lines.append(f"| input | {fmt(i['psnr'], 2)} | {fmt(i['ssim'])} | {fmt(i.get('ciede2000'), 2)} | "
                 f"{fmt(i.get('exposure_error'))} | {fmt(i['brightness'])} | – | 0 | 1 | {fmt(i['noise'], 2)} |")
    if "reference" in first:  # the colour checks are against the input: the real target frames are not at 0 / 1
        f = first["reference"]
        lines.append(f"| reference frame (SICE pairs only) | ∞ | 1 | 0 | 0 | {fmt(f['brightness'])} | {fmt(f['clipped'], 2)} | "
                     f"{fmt(f['color_shift'])} | {fmt(f['saturation'])} | {fmt(f['noise'], 2)} |")
    for name, r in results.items():
        p, q = r["pairs"], r["photos"]
        lines.append(f"| {name} | {fmt(p['psnr'], 2)} | {fmt(p['ssim'])} | {fmt(p.get('ciede2000'), 2)} | "
                     f"{fmt(p.get('exposure_error'))} | {fmt(q['brightness'])} | "
                     f"{fmt(q['clipped'], 2)} | {fmt(q['color_shift'])} | {fmt(q['saturation'])} | "
                     f"{fmt(q['noise'], 2)} |")
    return lines


def card_scores(name: str, weights=None, data_dir=None, fraction: float = data_mod.VALIDATION_FRACTION) -> dict:
    """What a model card reports from this evaluation: {"real_photos": scores as shipped (default settings),
    "real_photos_denoise_off": the same with denoise off}."""
    return {"real_photos": evaluate(model_enhancer(name, weights), data_dir, fraction),
            "real_photos_denoise_off": evaluate(model_enhancer(name, weights, denoise=0), data_dir, fraction)}


def card_section(r: dict, off: dict | None = None) -> list[str]:
    """The model card's real-photo section (every model card has it): r at default settings; off: the same
    with denoise off (card_scores), shown as a second table."""
    c, p, i = r["counts"], r["pairs"], r["input"]
    rows = [
        "", f"## Real photos (held out: {c['scenes']} SICE scenes, {c['pairs']} dark frames with their scene's "
        f"well-exposed frame; {c['lol']} LOL low-light photos)",
        "| | PSNR (dB) | SSIM | CIEDE2000 | exposure error | brightness | clipped beyond input (%) | colour shift "
        "| saturation ratio | flat noise (%) |", "|---|---|---|---|---|---|---|---|---|---|",
        f"| input | {fmt(i['psnr'], 2)} | {fmt(i['ssim'])} | {fmt(i.get('ciede2000'), 2)} | "
        f"{fmt(i.get('exposure_error'))} | {fmt(i['brightness'])} | – | 0 | 1 | {fmt(i['noise'], 2)} |",
    ]
    for label, q in (("all dark photos", r["photos"]), ("SICE dark frames", r["sice"]), ("LOL photos", r["lol"])):
        pp = p if label == "all dark photos" else {}
        rows.append(f"| {label} | {fmt(pp.get('psnr'), 2)} | {fmt(pp.get('ssim'))} | {fmt(pp.get('ciede2000'), 2)} | "
                    f"{fmt(pp.get('exposure_error'))} | {fmt(q['brightness'])} | {fmt(q['clipped'], 2)} | {fmt(q['color_shift'])} | "
                    f"{fmt(q['saturation'])} | {fmt(q['noise'], 2)} |")
    rows += ["", f"PSNR/SSIM on the real pairs: {r['protocol']}. CIEDE2000: mean colour difference against the "
             "reference frame after scaling the output to its mean brightness (the input's row: keeping the dark "
             f"frame's colour). Exposure error: |mean brightness - the reference frame's|. Photos: {r['note']}. Worst single photo: colour "
             f"shift {fmt(r['worst_photo']['color_shift'])}, clipped {fmt(r['worst_photo']['clipped'], 2)} %. "
             f"Inference as shipped (`lowlight_core.enhance` at default settings: exposure {EXPOSURE_DEFAULT}, denoise "
             f"{DENOISE_DEFAULT}, {ITERATIONS_DEFAULT} iterations "
             "where they apply)."]
    if off:
        rows += ["", "### Denoise off and `denoise=\"auto\"` (the default; lowlight_core.noise: strength from the "
                 "photo's estimated noise)",
                 "| denoise | PSNR (dB) | SSIM | brightness | clipped beyond input (%) | colour shift | saturation ratio "
                 "| flat noise (%): all / SICE / LOL |", "|---|---|---|---|---|---|---|---|"]
        for label, e in (("0", off), ("auto", r)):
            q = e["photos"]
            rows.append(f"| {label} | {fmt(e['pairs']['psnr'], 2)} | {fmt(e['pairs']['ssim'])} | "
                        f"{fmt(q['brightness'])} | {fmt(q['clipped'], 2)} | {fmt(q['color_shift'])} | "
                        f"{fmt(q['saturation'])} | {fmt(q['noise'], 2)} / {fmt(e['sice']['noise'], 2)} / "
                        f"{fmt(e['lol']['noise'], 2)} |")
    return rows


def refresh_card(card: Path, section: list[str]) -> None:
    """Replaces a model card's real-photo section (from its '## Real photos' heading to the next heading or
    figure) with `section` (card_section's lines): the card's other numbers stay as they were measured."""
    lines = card.read_text().split("\n")
    start = next((k for k, line in enumerate(lines) if line.startswith("## Real photos")), None)
    if start is None:  # a card from before the real-photo evaluation: the section goes before the licence
        start = end = next((k for k, line in enumerate(lines) if line.startswith("## Licence")), len(lines))
    else:
        end = next((k for k in range(start + 1, len(lines)) if lines[k].startswith(("## ", "!["))), len(lines))
    card.write_text("\n".join(lines[:start] + section[1:] + [""] + lines[end:]))


def sheet_photos(data_dir=None, fraction: float = data_mod.VALIDATION_FRACTION, k: int = SHEET_PHOTOS) -> list[Path]:
    """k held-out dark photos for docs/real-photos.png: half SICE dark frames (one per scene, spread over the
    scenes), half LOL photos."""
    pairs, lol = held_out(data_dir, fraction)
    darkest = [d for d, _ in darkest_frames(pairs)]
    return data_mod.spread(darkest, k // 2) + data_mod.spread(lol, k - k // 2)


def real_photo_sheet(models: list[tuple[str, object]], out_png: Path, data_dir=None, tile: int = 200) -> None:
    """docs/real-photos.png: each held-out dark photo (rows) enhanced by every model (columns)."""
    import torch

    from . import plots

    def tensor(a):
        return torch.from_numpy(a).permute(2, 0, 1).float().div(255)[None]

    rows = []
    for path in sheet_photos(data_dir):
        x = read_rgb(path)
        rows.append([tensor(x)] + [tensor(fn(x)) for _, fn in models])
    plots.image_grid(rows, ["input"] + [n for n, _ in models], out_png, tile=tile, max_bytes=3_000_000)


def darkest_frames(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """The darkest (dark, target) pair of each scene (the noisiest after enhancement) among held_out's pairs,
    which list each scene's frames from the darkest."""
    return [(d, t) for t, d in {t: d for d, t in reversed(pairs)}.items()]


def denoise_compare(model: str = DEFAULT_MODEL, settings=(0, DENOISE_AUTO, DENOISE_LEARNED), data_dir=None) -> dict:
    """{setting: {psnr, ssim, flat_noise (%), seconds}} of `model` at default exposure with each denoise
    setting on the darkest held-out frame of each scene, against the scene's well-exposed frame."""
    from lowlight_core import enhance
    from lowlight_core.metrics import flat_noise

    rows = {s: [] for s in settings}
    for dark, target in darkest_frames(held_out(data_dir)[0]):
        x, ref = read_rgb(dark), read_rgb(target)
        for s in settings:
            t0 = time.perf_counter()
            y = enhance(x, model=model, device="cpu", denoise=s)
            rows[s].append({"psnr": psnr_uint8(y, ref), "ssim": ssim_uint8(y, ref), "flat_noise": flat_noise(y),
                            "seconds": time.perf_counter() - t0})
    return {str(s): {k: _mean(r, k) for k in ("psnr", "ssim", "flat_noise", "seconds")} | {"frames": len(r)}
            for s, r in rows.items()}


def denoise_crop_figure(out_png: Path, data_dir=None, model: str = DEFAULT_MODEL, k: int = 3, crop: int = 192) -> list:
    """docs/denoise-crop.png: 100 % crops (crop x crop px from the centre, no resampling) of the k held-out dark
    SICE frames (darkest frame of each scene) whose `model` output is noisiest (flat_noise), in columns: the
    dark input, `model` with denoise off, "auto" (the guided filter, the default) and "learned" (the learned
    denoiser), the scene's well-exposed frame. Returns the frames used."""
    import torch

    from lowlight_core import enhance
    from lowlight_core.metrics import flat_noise

    from . import plots

    scored = []
    for dark, target in darkest_frames(held_out(data_dir)[0]):
        x = read_rgb(dark)
        scored.append((flat_noise(enhance(x, model=model, device="cpu", denoise=0)), dark, target))
    scored = sorted((s for s in scored if math.isfinite(s[0])), key=lambda s: s[0], reverse=True)[:k]

    def tile(a):
        h, w = a.shape[:2]
        y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        return torch.from_numpy(a[y0:y0 + crop, x0:x0 + crop]).permute(2, 0, 1).float().div(255)[None]

    rows = []
    for _, dark, target in scored:
        x = read_rgb(dark)
        rows.append([tile(x)] + [tile(enhance(x, model=model, device="cpu", denoise=s))
                                 for s in (0, DENOISE_AUTO, DENOISE_LEARNED)] + [tile(read_rgb(target))])
    plots.image_grid(rows, ["input", f"{model}, denoise off", "auto (guided filter, default)", "learned",
                            "bright frame"], out_png, tile=crop)
    return [(d.name, t.name, n) for n, d, t in scored]


def write_sets(out_dir: Path, data_dir=None) -> dict[str, int]:
    """low/ + high/ (the real pairs, named <scene>_<file>) and dark/ (held-out LOL photos) as PNG files."""
    pairs, lol = held_out(data_dir)
    for sub in ("low", "high", "dark"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for dark, target in pairs:
        stem = f"{target.stem}_{dark.stem}"
        Image.fromarray(read_rgb(dark)).save(out_dir / "low" / f"{stem}.png")
        Image.fromarray(read_rgb(target)).save(out_dir / "high" / f"{stem}.png")
    for p in lol:
        Image.fromarray(read_rgb(p)).save(out_dir / "dark" / f"{p.stem}.png")
    return {"pairs": len(pairs), "dark": len(lol)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.real_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="folder holding sice_part1 and lol_train_low (default ../shared/data)")
    p.add_argument("--models", nargs="+", default=[], help="model names, or 'all' (every model with weights)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH", help="weights instead of shipped")
    p.add_argument("--json", type=Path, help="write all scores here")
    p.add_argument("--table", type=Path, help="write the markdown table here")
    p.add_argument("--sheet", type=Path, help="write the side-by-side sheet (PNG) here")
    p.add_argument("--write", type=Path, help="write the held-out sets as PNG folders here and stop")
    p.add_argument("--denoise", type=parse_denoise, default=DENOISE_DEFAULT, metavar="S|auto|learned",
                   help=f"enhance(..., denoise=S): a strength in [0, 1], auto or learned (default {DENOISE_DEFAULT})")
    p.add_argument("--exposure-from-reference", action="store_true",
                   help="enhance each real pair at E = its reference's mean brightness (what an ideal automatic "
                        "exposure picks) instead of the default E")
    p.add_argument("--old-defaults-column", metavar="NAME", action="append", default=[],
                   help="add a column 'NAME E 0.6, no denoise' to the sheet (the defaults before exposure and "
                        "denoise were auto; docs/real-photos.png has one for the default model)")
    p.add_argument("--denoise-compare", metavar="MODEL",
                   help="print denoise off / auto / learned on the darkest held-out frame of each scene (JSON) "
                        "and stop")
    p.add_argument("--denoise-crop", type=Path, metavar="PNG",
                   help="write the 100 %% crop figure of denoise off / auto / learned (docs/denoise-crop.png) "
                        "and stop")
    p.add_argument("--cards-from", type=Path, metavar="JSON",
                   help="with --refresh-cards: take each model's default-settings scores from this --json output "
                        "instead of measuring again (the card then has no denoise-off table)")
    p.add_argument("--refresh-cards", action="store_true",
                   help="re-measure the real-photo section (denoise off and auto) of each model's shipped card "
                        "(lowlight_core/weights/NAME.md) and stop")
    args = p.parse_args(argv)
    from lowlight_core.models.registry import has_weights, list_models

    if args.denoise_compare:
        print(json.dumps(denoise_compare(args.denoise_compare, data_dir=args.data), indent=1))
        return 0
    if args.denoise_crop:
        print(denoise_crop_figure(args.denoise_crop, args.data))
        return 0
    if args.write:
        print(write_sets(args.write, args.data))
        return 0
    weights = dict(w.split("=", 1) for w in args.weights)
    names = [m.name for m in list_models() if has_weights(m.name)] if args.models == ["all"] else args.models
    if args.refresh_cards:
        from lowlight_core.models.registry import get_model_info, weights_path

        measured = json.loads(args.cards_from.read_text()) if args.cards_from else {}
        for name in [n for n in names if get_model_info(n).kind != "classical"]:  # classical models: no card
            if name in measured:
                ev = {"real_photos": measured[name], "real_photos_denoise_off": None}
            else:
                ev = card_scores(name, weights.get(name), args.data)
            card = Path(weights.get(name) or weights_path(name)).with_suffix(".md")
            refresh_card(card, card_section(ev["real_photos"], ev["real_photos_denoise_off"]))
            print(f"{card}: real-photo section re-measured", file=sys.stderr)
        return 0
    fns = [(n, model_enhancer(n, weights.get(n), denoise=args.denoise)) for n in names]
    results = {}
    for name, fn in (fns if args.json or args.table or not args.sheet else []):  # --sheet alone only draws
        results[name] = evaluate(fn, args.data, exposure_from_reference=args.exposure_from_reference)
        r = results[name]
        r["denoise"], r["exposure_from_reference"] = args.denoise, args.exposure_from_reference
        print(f"{name} (denoise {args.denoise}): {r['pairs']['psnr']:.2f} dB / SSIM {r['pairs']['ssim']:.3f}; photos: "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["photos"].items()) + f" ({r['seconds']:.0f} s)",
              file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=float))
    if args.table and results:
        args.table.write_text("\n".join(table_rows(results)) + "\n")
    if args.sheet:
        extra = [(f"{n} E 0.6, no denoise", model_enhancer(n, weights.get(n), exposure=0.6, denoise=0))
                 for n in args.old_defaults_column]
        real_photo_sheet(fns + extra, args.sheet, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
