"""The learned denoiser, denoise="learned" (lowlight_core.denoise_net): what it is made of (noise map, convex
blend of its candidates), that its strips give the whole-image result (every image kind: test_denoise.py, beside
the filter), that the shipped weights denoise a real noisy dark photo and leave a clean one alone, and that bad
weight files are refused by name."""
import numpy as np
import pytest
import torch

import lowlight_core as lc
from lowlight_core import denoise_net
from lowlight_core import frames as frames_mod
from lowlight_core.metrics import flat_noise

from test_denoise import dark_photo


def random_net(seed=0, width=8, layers=3) -> denoise_net.Denoiser:
    torch.manual_seed(seed)
    return denoise_net.Denoiser(width, layers).eval()


def as_float(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None]


def test_noise_map_is_the_input_std_times_the_local_gain():
    x = torch.full((1, 3, 20, 20), 0.1)
    m = denoise_net.noise_map(x, x * 4, 0.01, 0.001)
    assert torch.allclose(m, torch.full_like(m, 4 * (0.01 * 0.1 + 0.001) ** 0.5))


def test_the_output_is_a_convex_blend_of_the_candidates_read_through_the_noise_map():
    x = as_float(dark_photo(size=64))
    y = (x * 5).clamp(0, 1)
    net = random_net()
    cands = denoise_net.candidates(x, y, 0.002, 2e-5)
    out = net.blend(cands, denoise_net.noise_map(x, y, 0.002, 2e-5))
    lum = torch.cat([c.mean(1, keepdim=True) for c in cands], 1)
    assert (out.mean(1) >= lum.amin(1) - 1e-5).all() and (out.mean(1) <= lum.amax(1) + 1e-5).all()
    assert not torch.equal(out, net.blend(cands, denoise_net.noise_map(x, y, 0.02, 2e-4)))
    torch.nn.init.zeros_(net.head.weight), torch.nn.init.zeros_(net.head.bias)  # equal weights: the mean
    mean = sum(cands) / len(cands)
    assert torch.allclose(net.blend(cands, torch.zeros_like(y[:, :1])), mean.clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize("height,width", [(203, 151), (27, 400), (131, 50)])
def test_strips_give_the_whole_image_result(monkeypatch, height, width):
    """Strips start on even rows and carry receptive_radius rows of context: the whole-image result up to float
    rounding (the convolutions may sum in another order for another shape): float images within 1e-5, uint8
    within one level on a handful of values."""
    image = np.ascontiguousarray(np.resize(dark_photo(size=max(height, width)), (height, width, 3)))
    as_f = image.astype(np.float32) / 255
    whole = lc.enhance(image, model="zero_dce_pp", denoise="learned", device="cpu")
    whole_f = lc.enhance(as_f, model="zero_dce_pp", denoise="learned", device="cpu")
    radius = denoise_net.load().receptive_radius
    for rows in (radius, radius + 13):
        monkeypatch.setattr(frames_mod, "DENOISE_LEARNED_STRIP_PIXELS", rows * width)
        strips = lc.enhance(image, model="zero_dce_pp", denoise="learned", device="cpu")
        diff = np.abs(strips.astype(int) - whole)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-4
        np.testing.assert_allclose(lc.enhance(as_f, model="zero_dce_pp", denoise="learned", device="cpu"), whole_f,
                                   atol=1e-5)
    assert not np.array_equal(whole, lc.enhance(image, model="zero_dce_pp", denoise=0, device="cpu"))


def test_shipped_denoiser_lowers_flat_noise_and_keeps_a_clean_photo():
    """A real photo darkened with Poisson-Gaussian noise: the learned denoiser removes at least half of
    the flat-region noise that denoise=0 leaves and comes closer to the clean photo enhanced alike; a clean,
    well-exposed photo is changed by less than one level on average."""
    import skimage.data as skd
    from PIL import Image

    im = Image.fromarray(skd.chelsea())
    im.thumbnail((256, 256))
    clean = np.asarray(im, dtype=np.float64) / 255 * 0.12
    rng = np.random.default_rng(1)
    noisy = ((clean + rng.normal(size=clean.shape) * np.sqrt(0.003 * clean + 3e-5)).clip(0, 1) * 255).round()
    noisy = noisy.astype(np.uint8)
    off = lc.enhance(noisy, model="zero_dce_pp", exposure=0.5, denoise=0, device="cpu")
    learned = lc.enhance(noisy, model="zero_dce_pp", exposure=0.5, denoise="learned", device="cpu")
    assert flat_noise(learned) < 0.5 * flat_noise(off)
    clean8 = (clean * 255).round().astype(np.uint8)
    reference = lc.enhance(clean8, model="zero_dce_pp", exposure=0.5, denoise=0, device="cpu").astype(float)
    assert np.abs(learned - reference).mean() < np.abs(off - reference).mean()
    bright = (np.asarray(im, dtype=np.float64) * 0.9).round().astype(np.uint8)  # a clean, well-exposed photo
    plain = lc.enhance(bright, model="zero_dce_pp", exposure=0.5, denoise=0, device="cpu").astype(float)
    kept = lc.enhance(bright, model="zero_dce_pp", exposure=0.5, denoise="learned", device="cpu").astype(float)
    assert np.abs(kept - plain).mean() < 1.0


def test_bad_weights_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="denoiser weights are missing"):
        denoise_net.load(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="could not read"):
        denoise_net.load(tmp_path / "junk.pt")
    torch.save({"model": "dln", "config": {}, "state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not 'denoiser'"):
        denoise_net.load(tmp_path / "other.pt")
    net = random_net()
    net.convs[0].weight.data[0, 0, 0, 0] = float("nan")
    denoise_net.save(net, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match="NaN"):
        denoise_net.load(tmp_path / "nan.pt")
    denoise_net.save(random_net(), tmp_path / "small.pt")
    ckpt = torch.load(tmp_path / "small.pt", weights_only=True)
    ckpt["config"]["width"] = 16
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="do not fit"):
        denoise_net.load(tmp_path / "mismatch.pt")
    ckpt["config"]["candidates"] = [[1.0, 2.0, 2, 6]]
    torch.save(ckpt, tmp_path / "chroma.pt")
    with pytest.raises(ValueError, match="candidates"):
        denoise_net.load(tmp_path / "chroma.pt")
    with pytest.raises(ValueError, match="width"):
        denoise_net.Denoiser(0, 3)
    good = denoise_net.load(tmp_path / "small.pt")
    assert all(torch.equal(a, b) for a, b in zip(good.state_dict().values(), random_net().state_dict().values()))
