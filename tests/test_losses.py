"""Every loss against values derived by hand on tiny images, plus gradient flow."""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from lowlight_core import losses as L
from lowlight_core import ops

torch.manual_seed(0)


def const(value, shape=(1, 3, 16, 16), dtype=torch.float32):
    return torch.full(shape, value, dtype=dtype)


def assert_grad_ok(t, nonzero=True):
    assert t.grad is not None and torch.isfinite(t.grad).all()
    if nonzero:
        assert t.grad.abs().sum() > 0


# ---------------------------------------------------------------- Zero-DCE

def test_spa_constant_images():
    # One pooled region, all 4 neighbours are zero padding: 4 * (0 - c)^2.
    assert L.spatial_consistency_loss(const(0.0, (1, 3, 4, 4)), const(0.5, (1, 3, 4, 4))).item() == pytest.approx(1.0)


def test_spa_step_image():
    # x = 0, y has channel mean a on the left 8x4 half and b on the right: pooled difference map (2x2)
    # q = [[-a, -b], [-a, -b]]. Region (0,0): pad left a^2, right (b-a)^2, pad up a^2, down 0; region (0,1):
    # (b-a)^2 + b^2 + b^2 + 0; rows alike. Mean of the 4 regions = a^2 + b^2 + (b-a)^2.
    a, b = 0.2, 0.6
    y = torch.empty(1, 3, 8, 8)
    for c, off in enumerate((-0.1, 0.0, 0.1)):  # channels differ, channel mean is a / b
        y[0, c, :, :4] = a + off
        y[0, c, :, 4:] = b + off
    expected = a * a + b * b + (b - a) ** 2
    assert L.spatial_consistency_loss(torch.zeros_like(y), y).item() == pytest.approx(expected)
    assert L.spatial_consistency_loss(y, torch.zeros_like(y)).item() == pytest.approx(expected)
    # Rows/columns that do not fill a 4x4 region are ignored (AvgPool2d floor mode, official behaviour).
    big = torch.rand(1, 3, 11, 10)
    big[..., :8, :8] = y
    assert L.spatial_consistency_loss(torch.zeros_like(big), big).item() == pytest.approx(expected)


def test_exp_hand_values():
    assert L.exposure_loss(const(0.3, (1, 3, 32, 32))).item() == pytest.approx(0.09)  # (0.3 - 0.6)^2
    y = torch.empty(1, 3, 32, 32)
    y[..., :16], y[..., 16:] = 0.2, 0.8  # regions [[0.2, 0.8], [0.2, 0.8]]
    assert L.exposure_loss(y, 0.6).item() == pytest.approx((0.4**2 + 0.2**2) / 2, rel=1e-5)


def test_exp_per_sample_target():
    y = const(0.5, (2, 3, 16, 16))
    expected = ((0.5 - 0.3) ** 2 + (0.5 - 0.9) ** 2) / 2
    assert L.exposure_loss(y, torch.tensor([0.3, 0.9])).item() == pytest.approx(expected)
    assert L.exposure_loss(y, torch.tensor(0.3)).item() == pytest.approx(0.04)
    assert L.exposure_loss(y, torch.tensor([0.3, 0.3])).item() == pytest.approx(L.exposure_loss(y, 0.3).item())
    with pytest.raises(ValueError, match="exposure"):
        L.exposure_loss(y, torch.tensor([0.3, 0.4, 0.5]))
    with pytest.raises(ValueError, match="H, W >= 16"):
        L.exposure_loss(const(0.5, (1, 3, 8, 16)))


def test_col_hand_value_and_grey_gradient():
    y = torch.empty(2, 3, 4, 4)
    checker = (torch.arange(4).view(4, 1) + torch.arange(4)) % 2
    y[0, 0] = 0.4 + 0.2 * checker  # mean 0.5
    y[0, 1], y[0, 2] = 0.3, 0.2
    y[1] = 0.7  # grey: 0
    # Drg = 0.2^2, Drb = 0.3^2, Dgb = 0.1^2 -> sqrt(0.04^2 + 0.09^2 + 0.01^2), averaged with the grey image's 0.
    expected = math.sqrt(0.04**2 + 0.09**2 + 0.01**2) / 2
    y.requires_grad_()
    loss = L.color_constancy_loss(y)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert_grad_ok(y)
    assert torch.all(y.grad[1] == 0)  # grey image: zero gradient, not NaN
    assert L.color_constancy_loss(y[1:].detach()).item() == 0.0


def test_zero_dce_losses_gradcheck():
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    y = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: L.spatial_consistency_loss(x, y), (y,))
    assert torch.autograd.gradcheck(L.color_constancy_loss, (y[..., :2, :3].detach().requires_grad_(),))


def test_zero_reference_total():
    # x = 0, y = 0.6 grey (16x16): spa: pooled 4x4 map of -0.6, interior differences 0, 16 neighbour slots are
    # padding -> 16 * 0.36 / 16 regions = 0.36. exp: 0 (mean is E). col: 0 (grey).
    # alpha (1, 24, 4, 4) = 0.1 * column: dw = 0.1, dh = 0 -> 2 * (24 * 4 * 3 * 0.01 / (4 * 3)) / 1 = 0.48.
    x, y = torch.zeros(1, 3, 16, 16), const(0.6)
    alpha = (0.1 * torch.arange(4.0)).expand(1, 24, 4, 4)
    total, terms = L.zero_reference_loss(x, y, alpha, 0.6)
    assert set(terms) == {"tv", "spa", "col", "exp"}
    assert terms["tv"].item() == pytest.approx(0.48)
    assert terms["spa"].item() == pytest.approx(0.36)
    assert terms["exp"].item() == pytest.approx(0.0, abs=1e-12)
    assert terms["col"].item() == pytest.approx(0.0, abs=1e-12)
    assert total.item() == pytest.approx(200 * 0.48 + 0.36)
    total_pp, _ = L.zero_reference_loss(x, y, alpha, 0.6, weights=L.ZERO_DCE_PP_WEIGHTS)
    assert total_pp.item() == pytest.approx(1600 * 0.48 + 0.36)
    total_exp, _ = L.zero_reference_loss(x, y, alpha, 0.4, weights={"tv": 0})
    assert total_exp.item() == pytest.approx(0.36 + 10 * 0.04)
    with pytest.raises(ValueError, match="unknown weight"):
        L.zero_reference_loss(x, y, alpha, 0.6, weights={"color": 1})


def test_zero_reference_gradients_through_curve():
    x = torch.rand(2, 3, 32, 32) * 0.3
    alpha = (0.1 * torch.randn(2, 24, 32, 32)).requires_grad_()
    y = ops.le_curve(x, alpha, 8)
    total, terms = L.zero_reference_loss(x, y, alpha, torch.tensor([0.4, 0.8]))
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(t) for t in terms.values())
    assert_grad_ok(alpha)


# ---------------------------------------------------------------- IQE

def blur_color_by_hand(d, sigma=3.0, ksize=21):
    """mean((G * d)^2) with explicit loops: 2-D Gaussian from math.exp, zero padding, 'same' output."""
    r = ksize // 2
    g = [math.exp(-(t * t) / (2 * sigma * sigma)) for t in range(-r, r + 1)]
    s = sum(g)
    g = [v / s for v in g]
    d = d.numpy().astype(np.float64)
    B, C, H, W = d.shape
    total = 0.0
    for b in range(B):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    acc = 0.0
                    for u in range(ksize):
                        for v in range(ksize):
                            ii, jj = i + u - r, j + v - r
                            if 0 <= ii < H and 0 <= jj < W:
                                acc += g[u] * g[v] * d[b, c, ii, jj]
                    total += acc * acc
    return total / d.size


def test_color_loss_explicit_loop():
    x, y = torch.rand(1, 2, 5, 6, dtype=torch.float64), torch.rand(1, 2, 5, 6, dtype=torch.float64)
    assert L.color_loss(x, y).item() == pytest.approx(blur_color_by_hand(x - y), rel=1e-10)


def test_to_grayscale():
    x = torch.eye(3).view(3, 3, 1, 1)  # pure red, green, blue
    torch.testing.assert_close(L.to_grayscale(x).flatten(), torch.tensor([0.299, 0.587, 0.114]))
    assert L.to_grayscale(torch.rand(2, 3, 5, 7)).shape == (2, 1, 5, 7)


def test_texture_losses_hand_values():
    ln3 = math.log(3.0)
    assert L.texture_loss_generator(torch.zeros(4, 2)).item() == pytest.approx(math.log(2.0))
    # logits (0, ln 3) -> p(real) = 3/4.
    fake = torch.tensor([[0.0, ln3]], requires_grad=True)
    assert L.texture_loss_generator(fake).item() == pytest.approx(-math.log(0.75))
    real = torch.tensor([[0.0, ln3]], requires_grad=True)
    fake_d = torch.tensor([[ln3, 0.0]], requires_grad=True)  # p(fake) = 3/4
    loss_d = L.texture_loss_discriminator(real, fake_d)
    assert loss_d.item() == pytest.approx(-math.log(0.75))
    loss_d.backward()
    assert_grad_ok(real)
    assert_grad_ok(fake_d)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        L.texture_loss_generator(torch.zeros(4))


def sum_of_channels():
    conv = nn.Conv2d(3, 1, 1, bias=False)
    nn.init.ones_(conv.weight)
    return conv


def test_content_loss_disabled_without_weights():
    loss = L.ContentLoss()
    assert loss.enabled is False and "VGG" in loss.reason and "disabled" in loss.reason
    assert loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)).item() == 0.0
    with pytest.raises(FileNotFoundError, match="not found"):
        L.ContentLoss("/nonexistent/vgg19.pt")


def test_content_loss_with_features():
    loss = L.ContentLoss(features=sum_of_channels())
    assert loss.enabled and loss.reason == ""
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.features.training
    e = const(0.5, (1, 3, 4, 4)).requires_grad_()
    value = loss(e, const(0.25, (1, 3, 4, 4)))  # features 1.5 vs 0.75 -> 0.75^2
    assert value.item() == pytest.approx(0.5625)
    value.backward()
    torch.testing.assert_close(e.grad, torch.full_like(e, 2 * 0.75 / 16))


def test_content_loss_with_vgg19(tmp_path):
    """The enabled path end to end: a torchvision-layout VGG-19 file (random weights; pretrained ones cannot be
    downloaded here) loaded by path, as a user would pass theirs. LOWLIGHT_VGG19_WEIGHTS picks a real file."""
    from lowlight_core.models.vgg import VGG19Features

    path = os.environ.get("LOWLIGHT_VGG19_WEIGHTS") or str(tmp_path / "vgg19.pth")
    if not os.path.isfile(path):
        torch.manual_seed(0)
        state = {f"features.{k}": v for k, v in VGG19Features(None).features.state_dict().items()}
        torch.save(state, path)
    loss = L.ContentLoss(path)
    assert loss.enabled
    t = torch.rand(1, 3, 64, 64)
    e = t.clone().requires_grad_()
    assert loss(e, t).item() == pytest.approx(0.0, abs=1e-10)
    value = loss((e * 0.5).clamp(0, 1), t)
    value.backward()
    assert value.item() > 0
    assert_grad_ok(e)


def test_iqe_generator_total():
    e = const(0.5, (1, 3, 4, 4)).requires_grad_()
    t = const(0.25, (1, 3, 4, 4))
    # content 0.75^2 (features: channel sum), texture ln 2 (logits 0), tv 0 (constant), color by hand.
    color = blur_color_by_hand(torch.full((1, 3, 4, 4), 0.25))
    total, terms = L.iqe_generator_loss(e, t, torch.zeros(1, 2), L.ContentLoss(features=sum_of_channels()))
    assert terms["content"].item() == pytest.approx(0.5625)
    assert terms["texture"].item() == pytest.approx(math.log(2.0))
    assert terms["tv"].item() == pytest.approx(0.0)
    assert terms["color"].item() == pytest.approx(color, rel=1e-5)
    assert total.item() == pytest.approx(0.5625 + 0.4 * math.log(2.0) + 0.1 * color, rel=1e-6)
    total.backward()
    assert_grad_ok(e)
    total_no_content, terms = L.iqe_generator_loss(e, t, torch.zeros(1, 2), L.ContentLoss())
    assert terms["content"].item() == 0.0
    assert total_no_content.item() == pytest.approx(total.item() - 0.5625, rel=1e-6)


def test_iqe_gradients_flow():
    e = torch.rand(2, 3, 24, 24, requires_grad=True)
    logits = torch.randn(2, 2, requires_grad=True)
    total, _ = L.iqe_generator_loss(e, torch.rand(2, 3, 24, 24), logits)
    total.backward()
    assert_grad_ok(e)
    assert_grad_ok(logits)


# ---------------------------------------------------------------- DLN

def test_dln_loss_hand_values():
    # Identical constant images: SSIM 1, iso TV = sqrt(0 + eps) = 1e-3.
    total, terms = L.dln_loss(const(0.3), const(0.3))
    assert terms["ssim"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["tv"].item() == pytest.approx(1e-3)
    assert total.item() == pytest.approx(1e-6, abs=1e-7)
    # Constant 0.5 vs 0.25: zero variances, SSIM = (2 pq + C1) / (p^2 + q^2 + C1), C1 = 1e-4.
    expected_ssim = (0.25 + 1e-4) / (0.3125 + 1e-4)
    total, _ = L.dln_loss(const(0.5), const(0.25))
    assert total.item() == pytest.approx(1 - expected_ssim + 1e-6, rel=1e-5)
    # The optional L1 term: + l1_weight * |0.5 - 0.25|, reported unweighted.
    total, terms = L.dln_loss(const(0.5), const(0.25), l1_weight=2.0)
    assert terms["l1"].item() == pytest.approx(0.25)
    assert total.item() == pytest.approx(1 - expected_ssim + 1e-6 + 0.5, rel=1e-5)


def test_dln_gradients_flow():
    y = torch.rand(2, 3, 20, 20, requires_grad=True)
    total, _ = L.dln_loss(y, torch.rand(2, 3, 20, 20))
    total.backward()
    assert_grad_ok(y)


# ---------------------------------------------------------------- EnlightenGAN

def test_lsgan_hand_values():
    fake = torch.tensor([0.5, 1.5], requires_grad=True)
    assert L.lsgan_generator_loss(fake).item() == pytest.approx(0.25)
    real = torch.tensor([1.0, 0.0])
    # (mean(0, 1) + mean(0.25)) / 2
    assert L.lsgan_discriminator_loss(real, torch.tensor([0.5])).item() == pytest.approx(0.375)
    L.lsgan_generator_loss(fake).backward()
    assert_grad_ok(fake)


def test_relativistic_lsgan_hand_values():
    real = torch.tensor([2.0, 0.0], requires_grad=True)  # mean 1
    fake = torch.tensor([1.0, 0.0], requires_grad=True)  # mean 0.5
    # D: real - 0.5 - 1 = (0.5, -1.5) -> 1.25; fake - 1 = (0, -1) -> 0.5; (1.25 + 0.5) / 2.
    loss_d = L.ralsgan_discriminator_loss(real, fake)
    assert loss_d.item() == pytest.approx(0.875)
    # G: real - 0.5 = (1.5, -0.5) -> 1.25; fake - 1 - 1 = (-1, -2) -> 2.5; (1.25 + 2.5) / 2.
    loss_g = L.ralsgan_generator_loss(real, fake)
    assert loss_g.item() == pytest.approx(1.875)
    loss_g.backward()
    assert_grad_ok(fake)


def test_random_patches_same_positions():
    B, C, H, W = 2, 3, 40, 50
    low = torch.arange(B * C * H * W, dtype=torch.float32).view(B, C, H, W)
    g = torch.Generator().manual_seed(3)
    p_low, p_enh = L.random_patches(low, -low, generator=g)
    assert p_low.shape == p_enh.shape == (B * 5, C, 32, 32)
    assert torch.equal(p_enh, -p_low)
    corners = []
    for k in range(B * 5):
        idx = int(p_low[k, 0, 0, 0])  # value encodes (b, 0, y, x) of the top-left pixel
        b, y, x = idx // (C * H * W), idx % (H * W) // W, idx % W
        assert b == k // 5
        assert torch.equal(p_low[k], low[b, :, y:y + 32, x:x + 32])
        corners.append((y, x))
    assert len(set(corners)) > 1
    again = L.random_patches(low, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(again, p_low)
    with pytest.raises(ValueError, match="smaller than the patch size"):
        L.random_patches(torch.zeros(1, 3, 31, 64))
    with pytest.raises(ValueError, match="share"):
        L.random_patches(torch.zeros(1, 3, 40, 40), torch.zeros(2, 3, 40, 40))


def test_self_feature_preserving_loss():
    disabled = L.SelfFeaturePreservingLoss()
    assert not disabled.enabled and "VGG" in disabled.reason
    assert disabled(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)).item() == 0.0
    plain = L.SelfFeaturePreservingLoss(features=nn.Identity(), instance_norm=False)
    assert plain(const(0.2, (1, 3, 4, 4)), const(0.6, (1, 3, 4, 4))).item() == pytest.approx(0.16)
    # Instance norm removes a per-channel gain and offset: brightening 2x + 0.1 costs (almost) nothing.
    low = torch.rand(2, 3, 16, 16)
    enhanced = (2 * low + 0.1).requires_grad_()
    normed = L.SelfFeaturePreservingLoss(features=nn.Identity())
    assert normed(low, enhanced).item() < 1e-6
    assert plain(low, enhanced).item() > 0.1
    value = normed(low, torch.rand(2, 3, 16, 16, requires_grad=True))
    assert value.item() > 0.1
