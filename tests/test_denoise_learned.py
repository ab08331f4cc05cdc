"""The learned-denoiser machinery (lowlight_core.denoise_net; not wired into denoise="auto" yet: no trained weights
ship): the noise map, the tiled runner (tiled = untiled, odd sizes, thin images, every image kind), the weights
loader refusing bad files. The networks here are randomly initialized: these tests check the plumbing, not the
denoising."""
import numpy as np
import pytest
import torch

from lowlight_core import denoise_net
from lowlight_core.frames import to_frames
from lowlight_core.noise import estimate_noise
from lowlight_core.plan import windows

from test_denoise import dark_photo


def random_net(seed=0, width=8, layers=4) -> denoise_net.Denoiser:
    torch.manual_seed(seed)
    return denoise_net.Denoiser(width, layers).eval()


def test_noise_map_is_the_input_std_times_the_local_gain():
    x = torch.full((1, 3, 20, 20), 0.1)
    m = denoise_net.noise_map(x, x * 4, 0.01, 0.001)
    assert torch.allclose(m, torch.full_like(m, 4 * (0.01 * 0.1 + 0.001) ** 0.5))


def test_the_noise_map_goes_in():
    net = random_net()
    x = torch.from_numpy(dark_photo(size=64).astype(np.float32) / 255).permute(2, 0, 1)[None]
    y = (x * 5).clamp(0, 1)
    assert not torch.equal(denoise_net.apply(net, x, y, 0.0, 1e-6), denoise_net.apply(net, x, y, 0.01, 1e-4))


@pytest.mark.parametrize("height,width,tile", [(203, 151, 64), (27, 400, 64), (130, 130, 48)])
def test_tiled_equals_untiled(height, width, tile):
    net = random_net(height)
    g = torch.Generator().manual_seed(height)
    clean = torch.linspace(0.02, 0.15, width).view(1, 1, 1, -1).expand(1, 3, height, width)
    x = (clean + torch.randn(clean.shape, generator=g) * (0.002 * clean + 2e-5).sqrt()).clamp(0, 1)
    y = (x * 4).clamp(0, 1)
    m = estimate_noise(x)
    whole = denoise_net.apply(net, x, y, m.a, m.b)
    frames = to_frames(x)
    ws = windows(height, width, tile, net.receptive_radius)
    assert len(ws) > 1 and net.receptive_radius % 2 == 0
    out = y.clone()
    frames.denoise_learned(out, net, ws, model=m)
    assert (out - whole).abs().max() < 1e-5
    assert not torch.equal(out, y)


@pytest.mark.parametrize("kind", ["uint8", "uint16", "gray", "rgba"])
def test_every_kind_keeps_its_type_and_alpha(kind):
    x = dark_photo(size=96)
    if kind == "uint16":
        x = x.astype(np.uint16) * 257
    elif kind == "gray":
        x = x.mean(2).round().astype(np.uint8)
    elif kind == "rgba":
        x = np.dstack([x, np.full(x.shape[:2], 77, np.uint8)])
    frames = to_frames(x)
    out = frames.pixels.clone()
    frames.denoise_learned(out, random_net(), windows(*out.shape[-2:], 32, random_net().receptive_radius))
    res = frames.result(out)
    assert res.dtype == x.dtype and res.shape == x.shape
    assert not np.array_equal(res, x)
    if kind == "rgba":
        assert np.array_equal(res[..., 3], x[..., 3])


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
    ckpt["config"] = {"width": 16, "layers": 4}
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="do not fit"):
        denoise_net.load(tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="width"):
        denoise_net.Denoiser(0, 3)
    good = denoise_net.load(tmp_path / "small.pt")
    assert all(torch.equal(a, b) for a, b in zip(good.state_dict().values(), random_net().state_dict().values()))
