"""lowlight_core.sequence: frame sequences enhanced with decisions over time (the issue 25 targets on a clip
made from the bundled real dark photo, tests/_clips.py), scene cuts, the per-frame option, streaming."""
from __future__ import annotations

import numpy as np
import pytest

from _clips import SQUARE, SQUARE_STEP, SQUARE_TOP, dark_clip, flicker, frame_means, static_noise
from lowlight_core import enhance
from lowlight_core.sequence import enhance_frame, enhance_sequence, is_cut, signature

CUT = 20


@pytest.fixture(scope="module")
def static_clip():
    """The static scene (no square): per-frame and temporal results with denoise 'auto' and a fixed exposure
    E = 0.6 (the result's brightness in both scenes, though scene B is darker: they need other decisions)."""
    frames, mask = dark_clip(square=False, cut=CUT)
    per = np.stack([enhance(f, denoise="auto", exposure=0.6, device="cpu") for f in frames])
    return frames, mask, per, enhance_sequence(frames, denoise="auto", exposure=0.6, device="cpu")


def test_cuts_are_found_and_the_ramp_noise_and_moving_square_are_not_cuts():
    frames, _ = dark_clip(cut=CUT)
    sigs = [signature(f) for f in frames]
    assert [t for t in range(1, len(frames)) if is_cut(sigs[t - 1], sigs[t])] == [CUT]
    assert is_cut(signature(frames[0]), signature((frames[0] * 0.5).astype(np.uint8)))  # lights dimmed at once


def test_static_noise_is_averaged_over_frames(static_clip):
    frames, mask, per, tem = static_clip
    ratio = static_noise(tem, mask, 2, CUT - 2) / static_noise(per, mask, 2, CUT - 2)
    assert ratio <= 0.6, ratio  # target; measured 0.18


def test_brightness_flickers_at_most_half_as_much(static_clip):
    frames, _, per, tem = static_clip
    ratio = flicker(tem, CUT) / flicker(per, CUT)
    assert ratio <= 0.5, ratio  # target; measured 0.37


def test_a_cut_resets_everything(static_clip):
    """From the cut on, the result is that of the new scene alone (nothing decided before it carries over),
    and the output has the target brightness E on both sides of the cut, right from the first frame after it
    (scene A's decisions smoothed into scene B, 0.6 times as bright, would leave those frames darker)."""
    frames, _, per, tem = static_clip
    alone = enhance_sequence(frames[CUT:], denoise="auto", exposure=0.6, device="cpu")
    np.testing.assert_array_equal(tem[CUT:], alone)
    m = frame_means(tem)
    assert np.abs(m - 0.6).max() < 0.01  # E = 0.6 is the result's mean brightness (docs/exposure.md)
    assert np.abs(m[CUT:CUT + 5] - np.median(m[CUT:])).max() < 0.0025  # no ramp after the cut


def test_moving_square_keeps_its_edges():
    """A dark square moving 2 px a frame: the band it left one frame ago must not darken (a ghost), and its
    contrast against that band stays what the per-frame result has."""
    frames, _ = dark_clip(cut=CUT)
    tem = enhance_sequence(frames, denoise="auto", device="cpu")
    t = 10
    per = enhance(frames[t], denoise="auto", device="cpu")
    x0 = SQUARE_STEP * t
    rows = slice(SQUARE_TOP + 1, SQUARE_TOP + SQUARE - 1)

    def band(o, cols):
        return o[rows, cols].astype(float).mean()

    inside, vacated = slice(x0 + 1, x0 + SQUARE - 1), slice(x0 - SQUARE_STEP, x0)
    far = slice(x0 - SQUARE, x0 - SQUARE_STEP)  # left 2-4 frames ago: the averaging window's other frames
    assert band(tem[t], vacated) - band(tem[t], inside) >= 0.9 * (band(per, vacated) - band(per, inside))
    offset = band(tem[t], far) - band(per, far)  # the temporal result is a little brighter (less noise)
    assert band(tem[t], vacated) - band(per, vacated) >= offset - 5


def test_per_frame_option_is_enhance_on_every_frame():
    frames, _ = dark_clip(frames=6, size=(48, 64))
    out = enhance_sequence(frames, temporal=False, denoise=0.5, device="cpu")
    for f, y in zip(frames, out):
        np.testing.assert_array_equal(y, enhance(f, denoise=0.5, device="cpu"))


@pytest.mark.parametrize("denoise", [0, "auto"])
def test_iterator_streams_the_same_frames_and_enhance_frame_matches(denoise):
    frames, _ = dark_clip(frames=12, size=(48, 64), cut=7)
    whole = enhance_sequence(frames, denoise=denoise, device="cpu")
    assert whole.shape == frames.shape and whole.dtype == frames.dtype
    it = enhance_sequence(iter(list(frames)), denoise=denoise, device="cpu")
    assert not isinstance(it, np.ndarray)
    np.testing.assert_array_equal(np.stack(list(it)), whole)
    for t in (0, 5, 7, 11):
        np.testing.assert_array_equal(enhance_frame(frames, t, denoise=denoise, device="cpu"), whole[t])


def test_gray_uint16_and_float_sequences_keep_their_kind():
    frames, _ = dark_clip(frames=5, size=(48, 64))
    gray16 = (frames.mean(3) * 257).astype(np.uint16)
    out = enhance_sequence(gray16, denoise="auto", device="cpu")
    assert out.shape == gray16.shape and out.dtype == np.uint16 and out.mean() > gray16.mean()
    f32 = frames.astype(np.float32) / 255
    out = enhance_sequence(f32, device="cpu")
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_bad_sequences_are_refused_with_the_frame_named():
    frames, _ = dark_clip(frames=4, size=(48, 64))
    with pytest.raises(ValueError, match="frame 2: shape"):
        list(enhance_sequence(iter([frames[0], frames[1], frames[2][:10]]), device="cpu"))
    bad = frames.astype(np.float32) / 255
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="frame 3: .*NaN"):
        enhance_sequence(bad, device="cpu")
    with pytest.raises(ValueError, match="T x H x W"):
        enhance_sequence(frames[0, 0], device="cpu")
    with pytest.raises(TypeError, match="iterable"):
        enhance_sequence(42, device="cpu")
    with pytest.raises(ValueError, match="exposure"):
        enhance_sequence(frames, exposure=5.0, device="cpu")
    with pytest.raises(IndexError):
        enhance_frame(frames, 4, device="cpu")


def test_plan_applies_given_curve_maps():
    """What enhance_sequence uses: a plan's curve maps, kept (and smoothed over time), applied by another plan
    give enhance()'s result; other maps give another result; a model without curve maps refuses them."""
    import torch

    from lowlight_core.plan import Engine

    frame = dark_clip(frames=1, size=(48, 64))[0][0]
    engine = Engine("zero_dce_pp", torch.device("cpu"))
    alpha = engine.plan(frame, 0.6).curve_maps()

    def applied(maps):
        plan = engine.plan(frame, 0.6)
        plan.apply_curve(maps, 8)
        return plan.result()

    expected = enhance(frame, "zero_dce_pp", exposure=0.6, denoise=0, device="cpu")
    np.testing.assert_array_equal(applied(alpha), expected)
    assert not np.array_equal(applied(alpha * 0.5), expected)
    with pytest.raises(TypeError, match="curve maps"):
        Engine("gamma", torch.device("cpu")).plan(frame, 0.6).apply_curve(alpha, 8)


def test_large_frames_estimate_noise_on_bands_spread_over_the_frame():
    from lowlight_core.sequence import NOISE_SAMPLE_PIXELS, _noise_sample

    frame = np.arange(1080, dtype=np.uint16)[:, None, None].repeat(1920, 1).repeat(3, 2)
    sample = _noise_sample(frame)
    assert sample.shape[1:] == frame.shape[1:] and sample.shape[0] % 64 == 0
    assert NOISE_SAMPLE_PIXELS <= sample.shape[0] * 1920 < NOISE_SAMPLE_PIXELS + 64 * 1920
    assert sample[0, 0, 0] == 0 and sample[-1, 0, 0] == 1079  # top to bottom
    small = np.zeros((72, 96, 3), np.uint8)
    assert _noise_sample(small) is small
