"""Shipping trained weights under another model config without retraining (training.reconfigure), and the
card evaluation's shortcut (training.evaluate: maps estimated once per E by the inference copy) giving
model.enhance's numbers."""
import numpy as np
import pytest
import torch
from PIL import Image

from lowlight_core.models import registry
from training import evaluate as eval_mod
from training import reconfigure


def trained_file(path, **config):
    model = registry.get_model_info("zero_dce").build(**config)
    meta = {"description": "d", "parameters": 1,
            "training": {"command": "python -m training zero_dce --config cpu", "recipe": "zero_dce",
                         "notes": ["an old note"]}}
    return registry.save_weights(model, "zero_dce", path, meta), model


def test_reconfigure_keeps_the_tensors_and_the_training_and_says_what_changed(tmp_path):
    src, model = trained_file(tmp_path / "trained.pt")
    out = reconfigure.main([str(src), str(tmp_path / "run" / "zero_dce.pt"), "--set", "curve_on=value",
                            "--split-note", "another split", "--note", "why"])
    assert out == 0
    saved = torch.load(tmp_path / "run" / "zero_dce.pt", weights_only=True)
    assert saved["config"] == {"e_conditioned": True, "curve_on": "value"}
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in model.state_dict().items())
    t = saved["meta"]["training"]
    assert t["command"] == "python -m training zero_dce --config cpu"  # no retrain is claimed
    assert t["notes"][0] == "an old note" and "curve_on 'rgb' -> 'value'" in t["notes"][1]
    assert "not retrained" in t["notes"][1] and "another split" not in t["notes"][1] and t["notes"][2] == "why"
    assert t["split_note"] == "another split"
    assert registry.load_model("zero_dce", weights=tmp_path / "run" / "zero_dce.pt").config["curve_on"] == "value"
    ev = {"images": 1, "groups": {"under": 1, "well": 0, "over": 0}, "input_brightness": 0.1,
          "input_clipped_pct": 0.0, "input_gray_world": 0.0, "e_tracking": [], "mean_abs_err": 0.05,
          "monotonic_pct": 100.0, "brightness_monotonic_in_E": True,
          "identity": {"images": 0, "mean_abs_change": float("nan"), "mean_brightness_change": float("nan")}}
    card = eval_mod.model_card("zero_dce", saved["meta"], ev, tmp_path / "run" / "zero_dce.pt", None)
    assert "trained on another split" in card and "**Split:** another split" in card and "never trained on" not in card
    assert "not retrained" in card


def test_reconfigure_refuses_the_shipped_folder_a_no_op_and_a_config_that_does_not_fit(tmp_path, monkeypatch):
    src, _ = trained_file(tmp_path / "trained.pt")
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path / "shipped")
    (tmp_path / "shipped").mkdir()
    with pytest.raises(SystemExit, match="is in the shipped weights folder"):
        reconfigure.main([str(src), str(tmp_path / "shipped" / "zero_dce.pt"), "--set", "curve_on=value"])
    with pytest.raises(SystemExit, match="already has config"):
        reconfigure.main([str(src), str(tmp_path / "o.pt"), "--set", "curve_on=rgb"])
    with pytest.raises(RuntimeError):  # the E plane's weights do not fit a network without it
        reconfigure.main([str(src), str(tmp_path / "o.pt"), "--set", "e_conditioned=False"])
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.parametrize("curve_on", ["rgb", "value"])
def test_card_evaluation_gives_model_enhances_numbers(tmp_path, curve_on):
    torch.manual_seed(0)
    model = registry.get_model_info("zero_dce").build(curve_on=curve_on).eval()
    rng = np.random.default_rng(0)
    paths = []
    for i, (lo, hi) in enumerate(((0, 0.3), (0.2, 0.8), (0.6, 1))):  # under, well and over exposed
        a = (rng.uniform(lo, hi, (20, 28, 3)) * 255).astype(np.uint8)
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(a).save(paths[-1])
    ev = eval_mod.evaluate(model, paths)
    assert ev["groups"] == {"under": 1, "well": 1, "over": 1}
    from training import data as data_mod

    xs = [data_mod.load_rgb(p)[None] for p in paths]
    for row in ev["e_tracking"]:
        want = np.mean([float(model.enhance(x, exposure=row["E"], iterations=8).mean()) for x in xs])
        assert row["brightness"] == pytest.approx(want, abs=1e-6)
    under = xs[0]
    with torch.no_grad():
        alpha = model.estimate_alpha(under, 0.6)
    for n, b in ev["iterations_at_E06_under"].items():
        assert b == pytest.approx(float(model.apply_curve(under, alpha, n).mean()), abs=1e-6)
    well = xs[1]
    e = min(max(float(well.mean()), 0.3), 0.9)
    y = model.enhance(well, exposure=e, iterations=8)
    assert ev["identity"]["mean_abs_change"] == pytest.approx(float((y - well).abs().mean()), abs=1e-6)
