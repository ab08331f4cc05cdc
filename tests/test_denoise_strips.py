"""The denoise filter runs in strips of rows with FILTER_RADIUS rows of context (Frames.denoise), so a 12 MP photo
stays within a few strips of float memory: the result must be the whole-image filter's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lowlight_core as lc
from lowlight_core import frames as frames_mod
from lowlight_core import noise


def noisy_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = 20 + 15 * np.sin(xx / 9.0)[..., None] * np.array([1.0, 0.6, 0.3]) + (yy > h // 2)[..., None] * 25
    return np.clip(base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("strip_rows", [noise.FILTER_RADIUS, 23, 40])
def test_strips_give_the_whole_image_filter(monkeypatch, strip_rows):
    image = noisy_photo(131, 50)
    whole = lc.enhance(image, model="zero_dce_pp", exposure=0.5, denoise="auto", device="cpu")
    monkeypatch.setattr(frames_mod, "DENOISE_STRIP_PIXELS", strip_rows * image.shape[1])
    strips = lc.enhance(image, model="zero_dce_pp", exposure=0.5, denoise="auto", device="cpu")
    assert not np.array_equal(whole, lc.enhance(image, model="zero_dce_pp", exposure=0.5, denoise=0, device="cpu"))
    np.testing.assert_array_equal(strips, whole)


def test_strips_of_a_float_batch_match_within_rounding(monkeypatch):
    x = torch.from_numpy(noisy_photo(64, 37, 1).astype(np.float32) / 255).permute(2, 0, 1)
    batch = torch.stack([x, x.flip(1)])
    whole = lc.enhance(batch, model="dln", exposure=0.5, denoise=0.7, device="cpu")
    monkeypatch.setattr(frames_mod, "DENOISE_STRIP_PIXELS", 20 * 37)
    strips = lc.enhance(batch, model="dln", exposure=0.5, denoise=0.7, device="cpu")
    assert torch.allclose(strips, whole, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_summary_from_the_pixels_is_the_float_images(monkeypatch, dtype):
    """Frames makes the denoise decisions' noise.Summary without a float copy of the whole image: the same mean
    (exact block sums) and the same sampled tiles as the float image's (large enough to be sampled in tiles)."""
    monkeypatch.setattr(noise, "MAX_SAMPLE_PIXELS", 64 * 64 * 4)
    scale = np.iinfo(dtype).max
    image = (noisy_photo(300, 450, 3).astype(np.float64) / 255 * scale).astype(dtype)
    frames = frames_mod.to_frames(image)
    pixels = frames.pixels[:1, :3]
    got = frames._summary(pixels)
    want = noise.Summary.of(pixels.to(torch.float32) / scale)
    assert got.tiles.shape[0] > 1 and got.tiles.shape[2:] == (noise.TILE, noise.TILE)  # sampled, not whole
    assert torch.equal(got.tiles, want.tiles)
    assert got.mean == pytest.approx(want.mean, rel=1e-6)


def test_a_given_noise_model_samples_no_tiles(monkeypatch):
    """With the input's noise model given (napari passes it) and the output not measured, the denoise reads no
    tiles of the image (they are only for the noise fits); without it, it samples them. Same result either way
    when the given model is the one it would fit."""
    image = noisy_photo(96, 80)
    frames = frames_mod.to_frames(image)
    model = frames.noise_model()
    calls = []
    real = noise.sample_tiles
    monkeypatch.setattr(noise, "sample_tiles", lambda t: calls.append(t.shape) or real(t))
    out_given, out_fitted = frames.pixels.clone(), frames.pixels.clone()
    frames.denoise(out_given, 0.8, model=model)
    assert calls == []
    frames.denoise(out_fitted, 0.8)
    assert len(calls) == 1
    assert not torch.equal(out_given, frames.pixels)
    assert torch.equal(out_given, out_fitted)
