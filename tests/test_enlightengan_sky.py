"""EnlightenGAN's gain has no edge where the input has none (issue 22: a dark wavy band across a uniform night
sky). The U-Net's coarsest level decides regions of lower gain whose borders follow no edge of the input;
lowlight_core.models.enlightengan.smooth_shift makes the gain follow the input's own edges only."""
import numpy as np
import torch

from lowlight_core import enhance
from lowlight_core.models.enlightengan import SHIFT_RADIUS, smooth_shift


def _sunset(h=512, w=512, seed=0):
    """uint8 (h, w, 3): a dark orange sky brightening smoothly towards a glowing horizon at 55 % of the height,
    dark textured ground with lit windows below, camera-like noise and 8-bit quantisation."""
    rng = np.random.default_rng(seed)
    rows, horizon = np.arange(h)[:, None], int(h * 0.55)
    cols = np.linspace(-1, 1, w)[None]
    sky = 0.05 + 0.10 * rows / horizon + 0.45 * np.exp(-((rows - horizon) / 30.0) ** 2 - (cols / 0.5) ** 2)
    ground = rng.uniform(0.01, 0.06, (h // 16 + 1, w // 16 + 1)).repeat(16, 0).repeat(16, 1)[:h, :w]
    ground = ground + 0.5 * (rng.uniform(size=(h // 8 + 1, w // 8 + 1)) > 0.93).repeat(8, 0).repeat(8, 1)[:h, :w]
    v = np.where(rows < horizon, sky, ground)
    rgb = np.stack([v * 0.9, v * 0.55, v * 0.35], -1) + rng.normal(0, 0.004, (h, w, 3))
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8), horizon


def _blocks(a, rows):
    """Means of 4-row x 32-column blocks of the rows `rows` (a multiple of 4 long): noise averaged away."""
    a = a[rows].astype(np.float64).mean(-1)
    return a.reshape(a.shape[0] // 4, 4, -1, 32).mean(axis=(1, 3))


def test_shipped_enlightengan_draws_no_band_in_a_smooth_night_sky():
    """The gain (output / input over blocks) changes smoothly down the sky: no band, ring or border line. The
    shipped generator without smooth_shift drew a dark band with a sharp upper border 120 px above the glow
    (max second difference of the block log gain 0.22, 0.025 with it) and a bright line along the top border
    (row means' second difference 81 there, 1.5 with it)."""
    x, horizon = _sunset()
    y = enhance(x, model="enlightengan", device="cpu")
    sky = slice(0, 4 * ((horizon - 3) // 4))
    gain = np.log(_blocks(y, sky) / _blocks(x, sky))
    assert gain.mean() > np.log(2)  # it does brighten the sky
    assert np.abs(np.diff(gain, 2, axis=0)).max() < 0.08
    rows = y[sky].astype(np.float64).mean(axis=(1, 2))
    assert np.abs(np.diff(rows, 2)).max() < 3.0


def test_smooth_shift_removes_gain_edges_the_input_lacks_and_keeps_its_own():
    rng = torch.Generator().manual_seed(0)
    flat = (0.1 + 0.01 * torch.randn(1, 3, 96, 96, generator=rng)).clamp_min(0.01)  # a noisy flat input
    edged = flat.clone()
    edged[:, :, 48:, :] *= 4  # the same with a strong horizontal edge at row 48
    step = torch.zeros(1, 1, 96, 96)
    step[:, :, 48:, :] = 1.0  # a gain step at row 48
    on_flat, on_edge = smooth_shift(step, flat), smooth_shift(step, edged)
    # over the flat input the step becomes a ramp as wide as the window (per-row jumps of about 1 / (2r + 1))
    assert on_flat.diff(dim=2).abs().amax() < 3 / (2 * SHIFT_RADIUS + 1)
    # at the input's own edge it stays a step
    assert on_edge[..., 47:49, 10:-10].diff(dim=2).abs().amin() > 0.6
    torch.testing.assert_close(smooth_shift(torch.zeros_like(step), flat), torch.zeros_like(step))
