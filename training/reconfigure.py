"""Re-save trained weights under another model config, without training (python -m training.reconfigure).

    python -m training.reconfigure lowlight_core/weights/zero_dce.pt RUN/weights/zero_dce.pt --set curve_on=value
    python -m training zero_dce --eval-only --out RUN --weights RUN/weights/zero_dce.pt   # card + figure
    lowlight export RUN                                                                   # ship (with a backup)

The state_dict is copied bit for bit and must fit the new config (the file is loaded back through the registry
before this returns). The meta keeps the training section of the run that trained the weights (its command,
recipe, data and steps stay true) and gains a note naming the old and new config and this command, so the
model card generated from the new file says the weights were not retrained. OUT never lies in the shipped
weights folder: shipping is `lowlight export`.
"""
from __future__ import annotations

import argparse
import ast
import shlex
import sys
from pathlib import Path

import torch


def parse_setting(text: str) -> tuple[str, object]:
    """'key=value' -> (key, value); the value as a Python literal (True, 8, None) or else the plain string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def reconfigure(src: Path, out: Path, settings: dict, notes: list[str] = (), split_note: str | None = None,
                command: str | None = None) -> Path:
    """Writes src's weights with config updated by `settings` to `out`; returns out."""
    from lowlight_core.models import registry

    from .export import refuse_shipped

    refuse_shipped(out, "output")
    saved = torch.load(src, map_location="cpu", weights_only=True)
    name = saved["model"]
    info = registry.get_model_info(name)
    with torch.device("meta"):  # the stored config with the constructor's defaults filled in
        old = dict(info.build(**saved["config"]).config)
    new = {**old, **settings}
    if new == old:
        raise SystemExit(f"{src} already has config {old}")
    model = info.build(**new)
    model.load_state_dict(saved["state_dict"])  # strict: the new config must take the trained tensors as they are
    meta = dict(saved.get("meta", {}))
    training = dict(meta.get("training", {}))
    change = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v)
    training["notes"] = list(training.get("notes", [])) + [
        f"model config changed after training ({change}): these are the weights the run above trained with "
        f"config {old}, not retrained; re-saved with config {dict(model.config)} by `{command or 'training.reconfigure'}`"
    ] + list(notes)
    training["reconfigured"] = {"from": old, "to": dict(model.config), "command": command}
    if split_note:
        training["split_note"] = split_note
    meta["training"] = training
    storage = next((v.dtype for v in saved["state_dict"].values() if v.is_floating_point()), None)
    registry.save_weights(model, name, out, meta, storage_dtype=storage if storage != torch.float32 else None)
    loaded = torch.load(out, map_location="cpu", weights_only=True)["state_dict"]
    if any(not torch.equal(loaded[k], v) for k, v in saved["state_dict"].items()):
        raise RuntimeError(f"{out}: the tensors differ from {src}'s")
    registry.load_model(name, weights=out)
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m training.reconfigure", description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="trained weights (.pt)")
    p.add_argument("out", type=Path, help="where to write the re-configured weights (a run folder)")
    p.add_argument("--set", dest="settings", type=parse_setting, action="append", required=True,
                   metavar="KEY=VALUE", help="model config entry to change, e.g. curve_on=value")
    p.add_argument("--note", action="append", default=[], help="another note for the card's training section")
    p.add_argument("--split-note", help="when the weights were trained on another held-out split than the "
                                        "card's: what overlaps (printed under the card's validation heading)")
    args = p.parse_args(argv)
    out = reconfigure(args.src, args.out, dict(args.settings), args.note, args.split_note,
                      command="python -m training.reconfigure " + shlex.join(_without_notes(argv)))
    print(f"{out}: config {torch.load(out, map_location='cpu', weights_only=True)['config']}", file=sys.stderr)
    return 0


def _without_notes(argv: list[str]) -> list[str]:
    """argv without the --note/--split-note texts (the card prints them separately)."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--note", "--split-note"):
            skip = True
            continue
        if a.startswith(("--note=", "--split-note=")):
            continue
        kept.append(a)
    return kept


if __name__ == "__main__":
    sys.exit(main())
