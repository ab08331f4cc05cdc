"""PSNR/SSIM: hand values, identical images, and agreement with skimage in both SSIM conventions."""
import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lowlight_core.metrics import psnr, psnr_uint8, ssim, ssim_uint8, to_uint8

WANG = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
SKIMAGE_DEFAULT = dict(gaussian_weights=False, win_size=7, use_sample_covariance=True)
CONVENTIONS = [pytest.param(WANG, WANG, id="wang"), pytest.param(SKIMAGE_DEFAULT, {}, id="skimage-default")]


@pytest.fixture(scope="module")
def images():
    """astronaut (512x512x3 uint8) and a darkened, noisy version of it."""
    clean = data.astronaut()
    rng = np.random.default_rng(0)
    dark = clean.astype(np.float64) * 0.35 + rng.normal(0.0, 10.0, clean.shape)
    return clean, np.clip(np.round(dark), 0, 255).astype(np.uint8)


def as_tensor(a):
    return torch.from_numpy(a.astype(np.float64) / 255.0).permute(2, 0, 1)[None]


def test_to_uint8_rounds_and_clips_channels_last():
    t = torch.tensor([-0.1, 0.0, 0.25, 0.502, 0.6, 1.0, 1.2]).view(1, 1, 1, 7).expand(1, 3, 1, 7)
    out = to_uint8(t)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 7, 3)
    assert out[0, 0, :, 1].tolist() == [0, 0, 64, 128, 153, 255, 255]  # 63.75 -> 64, 128.01 -> 128
    assert to_uint8(t[0]).shape == (1, 7, 3)
    assert to_uint8(np.array([0.25, 2.0])).tolist() == [64, 255]


def test_psnr_hand_values():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.1)
    b[1] = 0.01  # mse 1e-4 -> 40 dB
    torch.testing.assert_close(psnr(a, b), torch.tensor([20.0, 40.0], dtype=torch.float64))
    torch.testing.assert_close(psnr(a * 255, b * 255, data_range=255.0), torch.tensor([20.0, 40.0],
                                                                                      dtype=torch.float64))
    u = np.full((5, 6, 3), 100, np.uint8)
    assert psnr_uint8(u, u + 5) == pytest.approx(10 * math.log10(255**2 / 25))


def test_identical_images_psnr_inf_ssim_one(images):
    clean, _ = images
    assert psnr_uint8(clean, clean) == math.inf
    assert ssim_uint8(clean, clean) == pytest.approx(1.0, abs=1e-12)
    t = as_tensor(clean[128:384, 128:384])
    assert torch.isinf(psnr(t, t)).all()
    torch.testing.assert_close(ssim(t, t), torch.ones(1, dtype=torch.float64))


def test_ssim_constant_images_hand_value():
    # Zero variances: SSIM = (2 p q + C1) / (p^2 + q^2 + C1), C1 = (0.01 * 1)^2.
    a, b = torch.full((1, 3, 12, 12), 0.5), torch.full((1, 3, 12, 12), 0.25)
    c1 = 1e-4
    expected = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)
    torch.testing.assert_close(ssim(a, b), torch.tensor([expected]))
    torch.testing.assert_close(ssim(a, b, **SKIMAGE_DEFAULT), torch.tensor([expected]))


def test_psnr_matches_skimage(images):
    clean, dark = images
    expected = peak_signal_noise_ratio(clean, dark, data_range=255)
    assert abs(psnr_uint8(clean, dark) - expected) < 1e-10
    assert abs(psnr(as_tensor(clean), as_tensor(dark)).item() - expected) < 1e-8


@pytest.mark.parametrize("ours,theirs", CONVENTIONS)
def test_ssim_uint8_matches_skimage(images, ours, theirs):
    clean, dark = images
    for a, b in ((clean, dark), (dark, clean), (clean[:, :, 0], dark[:, :, 0])):
        axis = -1 if a.ndim == 3 else None
        expected = structural_similarity(a, b, channel_axis=axis, data_range=255, **theirs)
        assert abs(ssim_uint8(a, b, **ours) - expected) < 1e-4


@pytest.mark.parametrize("ours,theirs", CONVENTIONS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_ssim_tensor_matches_skimage(images, ours, theirs, dtype, tol):
    clean, dark = images
    clean, dark = clean[128:384, 128:384], dark[128:384, 128:384]  # the face: a 256x256 crop keeps this fast
    expected = structural_similarity(clean / 255.0, dark / 255.0, channel_axis=-1, data_range=1.0, **theirs)
    got = ssim(as_tensor(clean).to(dtype), as_tensor(dark).to(dtype), **ours)
    assert got.dtype == dtype and abs(got.item() - expected) < tol


def test_ssim_batch_is_per_image(images):
    clean, dark = images
    a = torch.cat([as_tensor(clean), as_tensor(clean)])[:, :, :64, :80]
    b = torch.cat([as_tensor(clean), as_tensor(dark)])[:, :, :64, :80]
    s = ssim(a, b)
    assert s.shape == (2,) and s[0].item() == pytest.approx(1.0) and s[1].item() < 0.9


def test_ssim_is_differentiable():
    a = torch.rand(1, 2, 12, 13, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 2, 12, 13, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: ssim(a, b), (a,))


def test_bad_inputs():
    u = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        ssim_uint8(u.astype(np.float32), u)
    with pytest.raises(ValueError, match="shape"):
        psnr_uint8(u, u[:4])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_uint8(u, u)
    with pytest.raises(TypeError, match="torch"):
        psnr(u, u)
    with pytest.raises(ValueError, match="win_size"):
        ssim(torch.zeros(1, 1, 9, 9), torch.zeros(1, 1, 9, 9), gaussian_weights=False, win_size=4)


# ---------------------------------------------------------------- real-photo checks (no reference)

def _photo(seed=0, shape=(96, 128)):
    import skimage.data as skd
    from PIL import Image

    return np.asarray(Image.fromarray(skd.astronaut()).resize(shape[::-1]), dtype=np.uint8)


def test_a_pure_gain_keeps_colour_and_saturation():
    from lowlight_core.metrics import color_shift_blocks, saturation_ratio

    x = (_photo() * 0.25).astype(np.uint8)
    y = np.clip(np.round(x.astype(np.float64) * 3), 0, 255).astype(np.uint8)
    assert color_shift_blocks(x, y) < 0.01
    assert saturation_ratio(x, y) == pytest.approx(1.0, abs=0.02)


def test_colour_checks_see_washed_out_and_hue_shifted_outputs():
    from lowlight_core.metrics import color_shift_blocks, saturation_ratio

    x = _photo()
    grey = x.mean(-1, keepdims=True)
    washed = np.round(0.5 * x + 0.5 * grey).astype(np.uint8)
    assert 0.4 < saturation_ratio(x, washed) < 0.7  # halfway to grey: min/max moves less than halfway
    assert color_shift_blocks(x, x[:, :, [1, 2, 0]]) > 0.2
    assert color_shift_blocks(x, washed) > color_shift_blocks(x, x)


def test_black_blocks_are_not_scored():
    from lowlight_core.metrics import color_shift_blocks, saturation_ratio

    x = np.zeros((32, 32, 3), np.uint8)
    y = np.full((32, 32, 3), (200, 0, 0), np.uint8)
    assert np.isnan(color_shift_blocks(x, y)) and np.isnan(saturation_ratio(x, y))


def test_clipped_beyond_input_counts_new_white_pixels_only():
    from lowlight_core.metrics import clipped_beyond_input

    x = np.full((10, 10, 3), 100, np.uint8)
    x[0] = 255  # already clipped: not counted
    y = x.copy()
    y[0:3, :, 1] = 255
    assert clipped_beyond_input(x, y) == pytest.approx(20.0)


def test_flat_noise_measures_added_noise_relative_to_brightness():
    from lowlight_core.metrics import flat_noise

    rng = np.random.default_rng(0)
    clean = np.full((256, 256, 3), 128.0)
    for sigma in (2.0, 6.0):
        noisy = np.clip(np.round(clean + rng.normal(0, sigma, (256, 256, 1))), 0, 255).astype(np.uint8)
        assert flat_noise(noisy) == pytest.approx(100 * sigma / 128, rel=0.15)
    assert flat_noise(clean.astype(np.uint8)) == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- CIEDE2000 against the reference

def test_lab_conversion_matches_skimage(images):
    from skimage.color import rgb2lab

    from lowlight_core.metrics import srgb_to_lab

    rgb = images[0][::4, ::4] / 255.0
    np.testing.assert_allclose(srgb_to_lab(rgb), rgb2lab(rgb), atol=1e-3)  # skimage rounds the Lab constants


def test_ciede2000_matches_skimage_and_the_published_pair():
    from skimage.color import deltaE_ciede2000

    from lowlight_core.metrics import ciede2000

    rng = np.random.default_rng(3)
    lab1 = np.stack([rng.uniform(0, 100, 5000), rng.uniform(-90, 90, 5000), rng.uniform(-90, 90, 5000)], -1)
    lab2 = lab1 + rng.normal(0, 8, lab1.shape)
    lab2[:50, 1:] = 0  # greys: no hue
    np.testing.assert_allclose(ciede2000(lab1, lab2), deltaE_ciede2000(lab1, lab2), atol=1e-8)
    # Sharma, Wu and Dalal (2005), test pair 1
    assert ciede2000(np.array([50.0, 2.6772, -79.7751]), np.array([50.0, 0.0, -82.7485])) == pytest.approx(2.0425,
                                                                                                        abs=1e-4)


def test_ciede2000_uint8_ignores_exposure_but_sees_a_cast(images):
    from lowlight_core.metrics import ciede2000_uint8

    clean = images[0]
    assert ciede2000_uint8(clean, clean) == 0.0
    darker = np.round(clean * 0.5).astype(np.uint8)  # the same colours at half the brightness
    cast = np.clip(clean * np.array([1.0, 0.85, 0.7]), 0, 255).round().astype(np.uint8)  # a warm cast
    assert ciede2000_uint8(darker, clean) < 1.0
    assert ciede2000_uint8(darker, clean, match_brightness=False) > 10.0
    assert ciede2000_uint8(cast, clean) > 5 * ciede2000_uint8(darker, clean)
    with pytest.raises(ValueError, match="RGB"):
        ciede2000_uint8(clean[..., 0], clean[..., 0])
