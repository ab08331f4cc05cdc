"""Score a trained curve model on the held-out images and write its model card.

Every number comes from the inference path (model.enhance on the full-resolution validation images, the default
curve iterations unless stated):
- E tracking: for E in 0.4..0.7, the output's mean brightness (mean over pixels and RGB channels) and the mean
  |brightness - E|, for all images and by input exposure (under < 0.35 <= well <= 0.65 < over);
  "monotonic" is the share of images whose brightness rises with every step of E.
- clipping: % of output values that round to 255 (vs the input's).
- gray-world deviation: std of the three channel means divided by their mean (0 = grey on average);
  the output's next to the input's.
- near-identity: well-exposed images (mean 0.35-0.65) with E set to their own brightness: mean |y - x|.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from lowlight_core.controls import EXPOSURE_NOMINAL, EXPOSURE_GRID, EXPOSURE_RANGE, ITERATIONS_DEFAULT

from . import data as data_mod
from . import plots

EXPOSURES = EXPOSURE_GRID
assert EXPOSURE_NOMINAL in EXPOSURES  # the iterations table re-uses that E's curve maps
ITERATIONS_TABLE = (1, 2, 4, 8, 12, 16)
CARD_FIGURE_BYTES = 300_000
LICENCE = ("Trained on SICE Part 1 (Cai et al., TIP 2018; CC BY-NC 4.0 as distributed with Zero-DCE++) and the LOL "
           "training low-light images (Wei et al., BMVC 2018; no stated licence, research benchmark). These weights "
           "inherit those terms: **non-commercial research use only**.")


def gray_world_deviation(x: torch.Tensor) -> float:
    m = x.float().mean(dim=(0, 2, 3))
    return float(m.std(unbiased=False) / m.mean().clamp_min(1e-6))


def clipped_percent(x: torch.Tensor) -> float:
    return float(((x.clamp(0, 1) * 255).round() >= 255).float().mean() * 100)


def exposure_group(b: float) -> str:
    lo, hi = data_mod.WELL_EXPOSED
    return "under" if b < lo else ("over" if b > hi else "well")


def _scoring_alpha(model):
    """estimate_alpha of the CPU inference copy (lowlight_core.models.base.inference_model: channels_last
    weights; same maps within float rounding, ~1.4x faster for zero_dce here), or None for models that declare
    no curve maps. The curve itself runs on the model (model.apply_curve), as model.enhance does."""
    from lowlight_core.models.base import contract_of, inference_model

    contract = contract_of(model)
    if not contract.curve_maps:
        return None
    fast = inference_model(model) if contract.cpu_copy else model
    if fast is not model:  # the copy takes channels_last inputs (as the inference plan feeds it)
        return lambda x, e: fast.estimate_alpha(x.contiguous(memory_format=torch.channels_last), e).contiguous()
    return fast.estimate_alpha


@torch.no_grad()
def evaluate(model, paths, device="cpu", resize_long: int | None = None) -> dict:
    """The numbers of the model card over the image files `paths` (see the module docstring).

    Curve models: each image's curve maps are estimated once per E (with the inference copy, _scoring_alpha)
    and the curve applied to them, which is model.enhance; the iterations table re-uses the maps of
    E = EXPOSURE_NOMINAL instead of estimating them again."""
    model.eval()
    estimate = _scoring_alpha(model)
    per_e = {e: {"bright": [], "err": [], "clip": [], "gw": [], "group": []} for e in EXPOSURES}
    inputs = {"bright": [], "clip": [], "gw": []}
    monotonic, identity, iters = [], [], {n: [] for n in ITERATIONS_TABLE}
    for p in paths:
        x = data_mod.load_rgb(p, resize_long)[None].to(device)
        b_in = float(x.mean())
        inputs["bright"].append(b_in)
        inputs["clip"].append(clipped_percent(x))
        inputs["gw"].append(gray_world_deviation(x))
        group = exposure_group(b_in)
        bs, maps = [], {}
        for e in EXPOSURES:
            if estimate is None:
                y = model.enhance(x, exposure=e, iterations=ITERATIONS_DEFAULT)
            else:
                maps[e] = estimate(x, e)
                y = model.apply_curve(x, maps[e], ITERATIONS_DEFAULT)
            b = float(y.mean())
            bs.append(b)
            d = per_e[e]
            d["bright"].append(b)
            d["err"].append(abs(b - e))
            d["clip"].append(clipped_percent(y))
            d["gw"].append(gray_world_deviation(y))
            d["group"].append(group)
        monotonic.append(all(b2 > b1 for b1, b2 in zip(bs, bs[1:])))
        if group == "well":
            e = min(max(b_in, EXPOSURE_RANGE[0]), EXPOSURE_RANGE[1])
            y = (model.enhance(x, exposure=e, iterations=ITERATIONS_DEFAULT) if estimate is None
                 else model.apply_curve(x, estimate(x, e), ITERATIONS_DEFAULT))
            identity.append({"abs_change": float((y - x).abs().mean()), "bright_change": float(y.mean()) - b_in})
        if estimate is not None and group == "under":
            alpha = maps[EXPOSURE_NOMINAL]  # EXPOSURE_NOMINAL is one of EXPOSURES (asserted below)
            for n in ITERATIONS_TABLE:
                iters[n].append(float(model.apply_curve(x, alpha, n).mean()))

    def mean(v):
        return float(np.mean(v)) if len(v) else math.nan

    table = []
    for e in EXPOSURES:
        d = per_e[e]
        row = {"E": e, "brightness": mean(d["bright"]), "abs_err": mean(d["err"]),
               "clipped_pct": mean(d["clip"]), "gray_world": mean(d["gw"])}
        for g in ("under", "well", "over"):
            sel = [err for err, grp in zip(d["err"], d["group"]) if grp == g]
            row[f"abs_err_{g}"] = mean(sel)
            row[f"brightness_{g}"] = mean([b for b, grp in zip(d["bright"], d["group"]) if grp == g])
        table.append(row)
    groups = [exposure_group(b) for b in inputs["bright"]]
    return {
        "images": len(paths),
        "groups": {g: groups.count(g) for g in ("under", "well", "over")},
        "input_brightness": mean(inputs["bright"]),
        "input_clipped_pct": mean(inputs["clip"]),
        "input_gray_world": mean(inputs["gw"]),
        "e_tracking": table,
        "mean_abs_err": mean([r["abs_err"] for r in table]),
        "monotonic_pct": 100 * mean(monotonic),
        "brightness_monotonic_in_E": all(a["brightness"] < b["brightness"] for a, b in zip(table, table[1:])),
        "identity": {"images": len(identity), "mean_abs_change": mean([i["abs_change"] for i in identity]),
                     "mean_brightness_change": mean([i["bright_change"] for i in identity])},
        "iterations_at_E06_under": {n: mean(v) for n, v in iters.items()} if any(iters.values()) else {},
    }


@torch.no_grad()
def card_figure(model, paths, out_png, device="cpu", max_bytes: int = CARD_FIGURE_BYTES) -> None:
    """Before/after grid of `paths` (full resolution in, tiles shrunk to fit max_bytes)."""
    model.eval()
    rows = []
    for p in paths:
        x = data_mod.load_rgb(p)[None].to(device)
        rows.append([x] + [model.enhance(x, exposure=e, iterations=ITERATIONS_DEFAULT) for e in EXPOSURES])
    plots.image_grid(rows, ["input"] + [f"E = {e:g}" for e in EXPOSURES], out_png, tile=200, max_bytes=max_bytes)


def fmt(v, nd=3):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def card_header(name: str, meta: dict, weights_file: Path) -> list[str]:
    """Title, description and the "Training" section of a model card (how the weights were made)."""
    t = meta.get("training", {})
    return [
        f"# {name}: model card",
        "",
        f"{meta.get('description', '')}".strip(),
        "",
        "## Training",
        f"- command: `{t.get('command', '?')}`",
        f"- recipe: `{t.get('recipe', '?')}`, config `{t.get('config', '?')}`: {t.get('summary', '')}",
        f"- data: {t.get('data', '?')}",
        f"- steps: {t.get('steps', '?')} (batch {t.get('batch', '?')}, crop {t.get('crop', '?')} px), "
        f"{t.get('wall_time_min', float('nan')):.1f} min in training steps "
        f"({t.get('run_time_min', float('nan')):.1f} min wall time with the periodic validation) on "
        f"{t.get('device', '?')}, ops backend {t.get('backend', '?')}; the 2 cores were shared with other jobs",
        f"- weights: `{weights_file.name}`, {weights_file.stat().st_size / 1024:.0f} KiB, "
        f"{meta.get('parameters', '?')} parameters",
    ] + [f"- note: {n}" for n in t.get("notes", [])]


def model_card(name: str, meta: dict, ev: dict, weights_file: Path, figure: str | None) -> str:
    """Markdown model card from the weights' meta (how it was trained) and evaluate()'s numbers."""
    t = meta.get("training", {})
    split_note = t.get("split_note")
    lines = card_header(name, meta, weights_file) + [
        "",
        "## Validation (held-out images, never trained on)" if not split_note else
        "## Validation (the current held-out split; these weights were trained on another split)",
    ] + ([f"**Split:** {split_note}", ""] if split_note else []) + [
        f"{ev['images']} images (split: sha1 of the SICE scene (training/sice_scenes.csv) or of the file name), "
        f"{ev['groups']['under']} under-exposed (mean < 0.35), {ev['groups']['well']} well exposed, "
        f"{ev['groups']['over']} over-exposed (> 0.65); full resolution, inference path `model.enhance`, "
        f"{ITERATIONS_DEFAULT} iterations.",
        "",
    ]
    val = t.get("final_validation", {})
    if val:
        lines += ["Zero-reference validation loss at the end of training (first "
                  f"{t.get('val_images', '?')} validation images, E = {EXPOSURE_NOMINAL:g}): "
                  + ", ".join(f"{k.removeprefix('val_')} {v:.4g}" for k, v in val.items()), ""]
    lines += [
        "### Exposure tracking",
        "| E | mean brightness | mean abs(brightness − E) | under-exposed inputs | well exposed | over-exposed |"
        " clipped at 255 (%) | gray-world dev. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in ev["e_tracking"]:
        lines.append(f"| {r['E']:.1f} | {fmt(r['brightness'])} | {fmt(r['abs_err'])} | {fmt(r['abs_err_under'])} | "
                     f"{fmt(r['abs_err_well'])} | {fmt(r['abs_err_over'])} | {fmt(r['clipped_pct'], 2)} | "
                     f"{fmt(r['gray_world'])} |")
    lines += [
        "",
        f"Inputs: mean brightness {fmt(ev['input_brightness'])}, clipped {fmt(ev['input_clipped_pct'], 2)} %, "
        f"gray-world deviation {fmt(ev['input_gray_world'])} (std of the channel means / their mean).",
        f"Mean abs(brightness − E) over E = {EXPOSURES[0]:g}..{EXPOSURES[-1]:g}: **{fmt(ev['mean_abs_err'])}**. "
        "Mean brightness rises with E: "
        f"{'yes' if ev['brightness_monotonic_in_E'] else 'NO'}; per image, brightness rises at every step of E for "
        f"{ev['monotonic_pct']:.0f} % of the images.",
        "",
        f"Near-identity: on the {ev['identity']['images']} well-exposed images with E set to the image's own "
        f"brightness, the mean abs change per pixel value is {fmt(ev['identity']['mean_abs_change'])} and the "
        f"brightness changes by {fmt(ev['identity']['mean_brightness_change'], 3)} on average (the exposure loss "
        f"pulls every 16 x 16 region towards E, so the curve also compresses contrast).",
    ]
    if ev["mean_abs_err"] > 0.1:
        lines += ["", f"**Limitation:** the output brightness follows E only loosely (mean error "
                  f"{ev['mean_abs_err']:.2f}): dark inputs stay too dark and bright ones get too bright, i.e. E acts "
                  "mostly as a global gain. A network that sees only a small neighbourhood cannot tell how bright the "
                  "whole scene is; prefer a model whose error above is small when the exposure control matters."]
    if ev.get("iterations_at_E06_under"):
        its = ev["iterations_at_E06_under"]
        lines += ["", f"Iterations (E = {EXPOSURE_NOMINAL:g}, alpha estimated once, curve re-applied; under-exposed "
                  "images): mean "
                  "brightness " + ", ".join(f"n={n}: {fmt(v)}" for n, v in its.items()) + "."]
    if ev.get("real_photos"):
        from .real_eval import card_section

        lines += card_section(ev["real_photos"], ev.get("real_photos_denoise_off"))
    if figure:
        grid = ", ".join(f"{e:g}" for e in EXPOSURES)
        lines += ["", f"![before/after at E = {grid}]({figure})",
                  "", f"Rows: held-out images from dark to bright; columns: input, then E = {grid}."]
    lines += [
        "",
        "## Licence",
        LICENCE,
        "",
    ]
    return "\n".join(lines)


def write_json(path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, default=str))
