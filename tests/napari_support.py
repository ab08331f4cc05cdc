"""What the napari tests share: the registry pointed at a weights folder the tests fill with real weights files
(registry.save_weights), and dark test images. Qt-free (test_napari_compute.py imports it too)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lowlight_core.controls import DEFAULT_MODEL
from lowlight_core.models import registry


@pytest.fixture
def empty_weights_dir(tmp_path, monkeypatch):
    """Tests choose their weights: the registry looks in an empty directory, whatever the project ships."""
    path = tmp_path / "weights"
    path.mkdir()
    monkeypatch.setattr(registry, "WEIGHTS_DIR", path)
    return path


@pytest.fixture
def weights_dir(empty_weights_dir):
    """Real weights files: zero_dce_pp.pt and the default model's (the same network: tuned so alpha grows with
    E) and zero_dce.pt (random init)."""
    for name in dict.fromkeys(["zero_dce_pp", DEFAULT_MODEL]):
        registry.save_weights(tuned_zero_dce_pp(), name, empty_weights_dir / f"{name}.pt")
    torch.manual_seed(1)
    registry.save_weights(registry.get_model_info("zero_dce").build(), "zero_dce",
                          empty_weights_dir / "zero_dce.pt")
    return empty_weights_dir


def tuned_zero_dce_pp():
    """A few Adam steps that make the E-conditioned estimator's mean alpha track 1.2 * (E - 0.3)."""
    torch.manual_seed(0)
    net = registry.get_model_info("zero_dce_pp").build()
    x = torch.rand(2, 3, 24, 24) * 0.3
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        loss = sum((net.estimate_alpha(x, e).mean() - 1.2 * (e - 0.3)) ** 2 for e in (0.3, 0.5, 0.7, 0.9))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        means = [float(net.estimate_alpha(x, e).mean()) for e in (0.3, 0.6, 0.9)]
    assert means[0] < means[1] < means[2], means
    return net.eval()


def dark_rgb(h=48, w=64, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 60).astype(np.uint8)


def noisy_dark_rgb(h=48, w=64, seed=0):
    """A smooth dark gradient with Poisson-Gaussian noise: something for the denoise slider to remove."""
    rng = np.random.default_rng(seed)
    clean = np.linspace(0.03, 0.2, w)[None, :, None] * np.ones((h, 1, 3))
    return ((clean + rng.normal(size=clean.shape) * np.sqrt(0.002 * clean + 2e-5)).clip(0, 1) * 255).round() \
        .astype(np.uint8)


def as_float(a):
    return a / 255.0 if a.dtype == np.uint8 else a / 65535.0 if a.dtype == np.uint16 else a.astype(np.float64)


SMALL_CONFIGS = {"dln": {"width": 8, "blocks": 1}, "iqe_dcgan": {"width": 8, "blocks": 1},
                 "enlightengan": {"width": 4, "depth": 2}, "zero_dce": {}}


@pytest.fixture
def heavy_weights(empty_weights_dir):
    """Small randomly initialised heavy networks (speed and geometry do not depend on training)."""
    for i, (name, config) in enumerate(SMALL_CONFIGS.items()):
        torch.manual_seed(10 + i)
        registry.save_weights(registry.get_model_info(name).build(**config).eval(), name,
                              empty_weights_dir / f"{name}.pt")
    return empty_weights_dir
