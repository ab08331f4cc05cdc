"""Exposure for every model (lowlight_core.exposure, Plan.decide): the auto target, the tone stage, calibration,
and the promise to users: enhance(image, model, exposure=E) has mean brightness E, rising with E, for every
shipped model, and a tiled run equals the untiled one (the decision is made once on the whole image)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lowlight_core as lc
from lowlight_core import exposure
from lowlight_core.controls import EXPOSURE_RANGE, parse_exposure
from lowlight_core.io import read_image
from lowlight_core.models.registry import list_models

SAMPLE = read_image(lc.__path__[0] + "/data/sample_dark.png")[0]
SHIPPED = [m.name for m in list_models() if m.name not in ("gamma", "clahe")]


def test_tone_keeps_hue_ends_and_order():
    torch.manual_seed(0)
    y = torch.rand(2, 3, 17, 23, dtype=torch.float64) * 0.6
    y[0, :, 0, 0] = 0
    y[0, :, 0, 1] = 1
    assert torch.equal(exposure.tone(y, 0.0), y)
    up, down = exposure.tone(y, 0.5), exposure.tone(y, -0.5)
    assert (up >= y - 1e-12).all() and (down <= y + 1e-12).all()
    assert up[0, :, 0, 0].eq(0).all() and up[0, :, 0, 1].eq(1).all()  # 0 and 1 stay: nothing clipped
    assert up.max() <= 1
    ratio = y[:, 0] / y[:, 1].clamp_min(1e-9)
    assert torch.allclose((up[:, 0] / up[:, 1].clamp_min(1e-9))[y[:, 1] > 1e-3], ratio[y[:, 1] > 1e-3], rtol=1e-9)


def test_probe_of_a_large_photo_decides_as_the_exact_thumbnail():
    """The probe's block means are taken at only PROBE_OVERSAMPLE x its size (speed): on a 12 MP photo its
    brightness statistics, hence the auto target, stay those of the one-step antialiased resize of the float
    photo (what the target was fitted on)."""
    import torch.nn.functional as F
    from lowlight_core.models._common import fit_long_side

    x = torch.from_numpy(SAMPLE.copy()).permute(2, 0, 1)[None].float()
    big = F.interpolate(x, size=(3000, 4000), mode="bicubic", align_corners=False)
    big = big + torch.randn(big.shape, generator=torch.Generator().manual_seed(0)) * 3  # full-resolution noise
    photo = big.round().clamp(0, 255).to(torch.uint8).contiguous(memory_format=torch.channels_last)
    exact = F.interpolate(photo.float() / 255, size=fit_long_side(3000, 4000, exposure.PROBE_SIZE),
                          mode="bilinear", antialias=True, align_corners=False)
    probe = exposure.probe(photo)
    assert probe.shape == exact.shape
    assert abs(exposure.brightness(probe) - exposure.brightness(exact)) < 1e-3
    assert abs(exposure.auto_targets(probe)[0] - exposure.auto_targets(exact)[0]) < 1e-3  # 5e-4 measured


@pytest.mark.parametrize("target", [0.3, 0.45, 0.6])
def test_fit_tone_hits_the_target(target):
    torch.manual_seed(1)
    y = torch.rand(1, 3, 40, 50) * 0.3  # dark
    a = exposure.fit_tone(y, target)
    assert abs(exposure.brightness(exposure.tone(y.double(), a)) - target) < 1e-5


def test_the_tone_stage_as_curve_steps_is_the_tone_stage():
    """extend_maps: a curve model's maps plus the tone stage as extra steps give the curve, then tone()."""
    from lowlight_core import ops
    torch.manual_seed(2)
    x = torch.rand(2, 3, 9, 11)
    maps = torch.rand(2, 3, 3, 4) * 0.5  # one shared low-resolution map
    extended, n = exposure.extend_maps(maps, 4, [0.3, -0.2])
    assert n == 4 + exposure.TONE_STEPS and extended.shape == (2, 3 * n, 3, 4)
    v = x.amax(1, keepdim=True)
    for b, a in enumerate([0.3, -0.2]):
        curved = x[b:b + 1] * ops.le_curve(v[b:b + 1], maps[b:b + 1].mean(1, keepdim=True), 4) / v[b:b + 1]
        value = v[b:b + 1]
        stepped = ops.le_curve(value, extended[b:b + 1].unflatten(1, (-1, 3)).mean(2), n)
        assert torch.allclose(x[b:b + 1] * stepped / value, exposure.tone(curved, a), atol=1e-5)


def test_calibrate_finds_the_input_and_stops_at_the_range_ends():
    assert abs(exposure.calibrate(lambda e: 0.5 * e + 0.1, 0.35) - 0.5) < 2e-3
    assert exposure.calibrate(lambda e: 0.9, 0.4) == EXPOSURE_RANGE[0]  # out of reach: the nearer end
    assert exposure.calibrate(lambda e: 0.1, 0.4) == EXPOSURE_RANGE[1]


def test_auto_targets_lie_in_the_range_and_ignore_how_dark_the_frame_is():
    x = torch.from_numpy(SAMPLE).permute(2, 0, 1)[None]
    (e,) = exposure.auto_targets(exposure.probe(x))
    assert EXPOSURE_RANGE[0] <= e <= EXPOSURE_RANGE[1]
    # the same scene half as bright (a shorter exposure): about the same target (features are ratios)
    (half,) = exposure.auto_targets(exposure.probe((x // 2).to(torch.uint8)))
    assert abs(half - e) < 0.02


def test_auto_and_numbers_parse_and_nonsense_is_refused():
    assert parse_exposure(" Auto ") == "auto" and parse_exposure("0.5") == 0.5
    with pytest.raises(ValueError, match="exposure must be a number in .* or 'auto'"):
        parse_exposure("bright")
    with pytest.raises(TypeError, match="exposure must be a number or 'auto'"):
        lc.enhance(SAMPLE[:8, :8], model="gamma", exposure="bright")
    with pytest.raises(ValueError, match="exposure must be in"):
        lc.enhance(SAMPLE[:8, :8], model="gamma", exposure=0.95)


# the sample's brightest result with its hues kept is about 0.59 (saturated colours: max(r, g, b) reaches 1 first)
TARGETS = np.array([0.3, 0.42, 0.54])


@pytest.mark.slow
@pytest.mark.parametrize("model", SHIPPED)
def test_every_shipped_model_gives_the_brightness_asked_for(model):
    image = SAMPLE[::2, ::2]  # 256 x 256: the probe is the image itself
    means = [lc.enhance(image, model=model, exposure=e, device="cpu").mean() / 255 for e in TARGETS]
    assert np.all(np.diff(means) > 0.08), means
    assert np.max(np.abs(np.array(means) - TARGETS)) < 0.02, means


@pytest.mark.parametrize("model", ["dln", "zero_dce"])
def test_a_tiled_run_equals_the_untiled_one_with_auto_exposure(model):
    image = SAMPLE[:150, :170]
    whole = lc.enhance(image, model=model, tile=0, device="cpu")
    tiled = lc.enhance(image, model=model, tile=64, device="cpu")
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_a_batch_gets_one_decision_per_image():
    x = torch.from_numpy(SAMPLE[:96, :96].copy()).permute(2, 0, 1).float().div(255)
    batch = torch.stack([x, x * 0.5])
    out = lc.enhance(batch, model="dln", exposure=0.5, device="cpu")
    for i in range(2):
        assert abs(float(out[i].mean()) - 0.5) < 0.06
        assert torch.allclose(out[i:i + 1], lc.enhance(batch[i:i + 1], model="dln", exposure=0.5, device="cpu"),
                              atol=1e-6)
