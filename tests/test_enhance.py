"""enhance(): every input kind round-trips, alpha and gray handled, tiling exact, bad input refused."""

import numpy as np
import pytest
import torch
from PIL import Image

import lowlight_core
from lowlight_core.inference import enhance

RNG = np.random.default_rng(0)


class Sqrt(torch.nn.Module):
    """Pointwise y = sqrt(x): exact expected values for checking the conversions."""

    receptive_radius = 0

    def enhance(self, x, exposure=0.6, iterations=8):
        assert x.dtype == torch.float32 and x.shape[1] == 3 and not x.requires_grad
        return x.sqrt()


class Mix(torch.nn.Module):
    """Channels (r, g/2, 0): tells the gray conversion (mean of the three results) from any other."""

    receptive_radius = 0

    def enhance(self, x, exposure=0.6, iterations=8):
        return torch.stack([x[:, 0], x[:, 1] / 2, torch.zeros_like(x[:, 2])], dim=1)


class LocalNet(torch.nn.Module):
    """Three 3x3 convolutions: each output pixel depends on inputs within 3 pixels."""

    receptive_radius = 3

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(8, 3, 3, padding=1))
        self.calls = []

    def enhance(self, x, exposure=0.6, iterations=8):
        self.calls.append(tuple(x.shape[2:]))
        return torch.sigmoid(self.net(x) * exposure * iterations)


def _array(shape, dtype):
    if np.dtype(dtype).kind == "f":
        return RNG.random(shape).astype(dtype)
    return RNG.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)


def _sqrt_expected(a: np.ndarray) -> np.ndarray:
    """The exact (float64) result of the Sqrt model on a, in a's units (not rounded)."""
    top = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(a.dtype, 1)
    return np.sqrt(a.astype(np.float64) / top) * top


def _assert_close_to(out: np.ndarray, exact: np.ndarray):
    """Floats: close; integers: rounded to nearest (within half a unit, plus float32 slack)."""
    if out.dtype.kind == "f":
        np.testing.assert_allclose(out, exact, rtol=1e-3, atol=1e-3)
    else:
        assert np.abs(out - exact).max() <= 0.5 + 1e-6 * np.iinfo(out.dtype).max


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(9, 11), (9, 11, 1), (9, 11, 2), (9, 11, 3), (9, 11, 4)])
def test_numpy_round_trip(shape, dtype):
    a = _array(shape, dtype)
    before = a.copy()
    out = enhance(a, model=Sqrt())
    assert isinstance(out, np.ndarray) and out.shape == a.shape and out.dtype == a.dtype
    np.testing.assert_array_equal(a, before)  # the input is not modified
    color = 1 if a.ndim == 2 or shape[2] <= 2 else 3
    exact = _sqrt_expected(a)
    _assert_close_to(out[..., :color] if a.ndim == 3 else out, exact[..., :color] if a.ndim == 3 else exact)
    if a.ndim == 3 and shape[2] in (2, 4):  # alpha copied bit for bit
        np.testing.assert_array_equal(out[..., -1], a[..., -1])


@pytest.mark.parametrize("mode,shape,dtype", [("L", (7, 5), np.uint8), ("LA", (7, 5, 2), np.uint8),
                                              ("RGB", (7, 5, 3), np.uint8), ("RGBA", (7, 5, 4), np.uint8),
                                              ("I;16", (7, 5), np.uint16), ("F", (7, 5), np.float32)])
def test_pil_round_trip(mode, shape, dtype):
    im = Image.fromarray(_array(shape, dtype))
    assert im.mode == mode
    im.info["icc_profile"] = b"profile"
    out = enhance(im, model=Sqrt())
    assert isinstance(out, Image.Image) and out.mode == mode and out.size == im.size
    assert out.info["icc_profile"] == b"profile"
    exact = _sqrt_expected(np.asarray(im))
    if mode in ("LA", "RGBA"):
        exact[..., -1] = np.asarray(im)[..., -1]
    _assert_close_to(np.asarray(out), exact)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 6, 7), (2, 4, 6, 7), (1, 1, 6, 7), (2, 2, 6, 7)])
def test_tensor_round_trip(shape, dtype):
    t = torch.rand(shape, dtype=torch.float64).to(dtype).requires_grad_(dtype == torch.float32)
    out = enhance(t, model=Sqrt())
    assert isinstance(out, torch.Tensor) and out.shape == t.shape and out.dtype == t.dtype
    assert out.device == t.device and not out.requires_grad and not out.is_inference()
    color = 1 if t.shape[-3] <= 2 else 3
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2}.get(dtype, 1e-6)
    expected = t.detach().float().sqrt().to(dtype)
    torch.testing.assert_close(out[..., :color, :, :], expected[..., :color, :, :], atol=tol, rtol=tol)
    if t.shape[-3] in (2, 4):
        assert torch.equal(out[..., -1, :, :], t.detach()[..., -1, :, :])


def test_gray_is_the_mean_of_the_enhanced_rgb():
    gray = _array((8, 9), np.float32)
    out = enhance(gray, model=Mix())
    np.testing.assert_allclose(out, gray * 0.5, rtol=1e-6)  # mean(x, x/2, 0)
    rgb = np.stack([gray] * 3, axis=2)
    np.testing.assert_allclose(enhance(rgb, model=Mix()).mean(axis=2), gray * 0.5, rtol=1e-6)


def test_non_contiguous_arrays():
    a = _array((10, 12, 3), np.uint8)
    for view in (a[:, ::-1], a[::2], a.transpose(1, 0, 2), np.asarray(Image.fromarray(a))):
        _assert_close_to(enhance(view, model=Sqrt()), _sqrt_expected(view))


def test_tiny_float_overshoot_is_clamped_without_touching_the_input():
    a = np.full((4, 4, 3), 0.25, np.float32)
    a[0, 0] = [1.0009, -0.0009, 1.0]
    t = torch.from_numpy(a.copy())
    out = enhance(a, model=Sqrt())
    np.testing.assert_allclose(out[0, 0], [1.0, 0.0, 1.0])
    assert a[0, 0, 0] == np.float32(1.0009)  # not clamped in place
    enhance(t.permute(2, 0, 1), model=Sqrt())
    assert torch.equal(t, torch.from_numpy(a))


@pytest.mark.parametrize("core", [3, 5, 16, 40])
def test_tiled_equals_untiled(core):
    x = torch.rand(2, 3, 37, 29)
    net = LocalNet()
    whole = enhance(x, model=net, tile=0)
    assert net.calls == [(37, 29)] * 2
    net.calls.clear()
    tiled = enhance(x, model=net, tile=core)
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)
    n_tiles = -(-37 // core) * -(-29 // core)
    assert len(net.calls) == 2 * n_tiles
    assert max(h for h, w in net.calls) <= core + 2 * net.receptive_radius


def _pixels_read(windows) -> int:
    return sum((w.in_rows.stop - w.in_rows.start) * (w.in_cols.stop - w.in_cols.start) for w in windows)


def test_a_strip_runs_in_as_few_windows_as_a_square_of_its_pixels():
    """Issue 26 item 10: Zero-DCE on a 1 x 200,000 strip took 12-29 s (782 windows of 1 x 270 pixels, each a
    call with its halo), the same pixels as 448 x 448 0.36 s (4 windows). Tiles keep their area, shaped to the
    image."""
    from lowlight_core.plan import tile_shape, windows

    strip, square = windows(1, 200_000, 256, 7), windows(448, 448, 256, 7)
    assert len(square) == 4 and len(strip) == 4
    assert _pixels_read(strip) < 1.001 * 200_000
    assert len(windows(200_000, 1, 256, 7)) == 4 and len(windows(30, 10_000, 256, 7)) == 5
    for h, w in [(1, 200_000), (200_000, 3), (30, 10_000), (300, 700), (37, 29), (5000, 256)]:
        th, tw = tile_shape(h, w, 256)
        assert th * tw <= 256 * 256 and th <= h and tw <= w


def test_a_thin_strip_tiled_equals_untiled():
    x = torch.rand(1, 3, 2, 3000)
    net = LocalNet()
    whole = enhance(x, model=net, tile=0)
    net.calls.clear()
    tiled = enhance(x, model=net, tile=16)
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)
    assert net.calls == [(2, 128 + 3)] + [(2, 128 + 6)] * 22 + [(2, 56 + 3)]  # 2 x 128 cores, 3-pixel halo


class NoEnhance(torch.nn.Module):
    receptive_radius = 0


class BadRadius(Sqrt):
    receptive_radius = 2.5


@pytest.mark.parametrize("model,match", [
    (NoEnhance(), r"NoEnhance has no enhance\(x, exposure, iterations\)"),
    (BadRadius(), "BadRadius: receptive_radius must be an int >= 0"),
    (42, "model must be a model name or an nn.Module"),
])
def test_a_custom_model_without_the_contract_gets_a_clear_type_error(model, match):
    with pytest.raises(TypeError, match=match):
        enhance(np.zeros((4, 5, 3), np.uint8), model=model)


def test_default_tile_bounds_the_window():
    net = LocalNet()
    a = _array((600, 520, 3), np.uint8)
    enhance(a, model=net)
    assert len(net.calls) == 4 and max(max(c) for c in net.calls) <= 512 + 2 * 3


def test_controls_reach_the_model():
    x = torch.rand(1, 3, 8, 8)
    net = LocalNet()
    a = enhance(x, model=net, exposure=0.3, iterations=2)
    b = enhance(x, model=net, exposure=0.9, iterations=2)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("image,error,match", [
    (np.zeros((0, 5, 3), np.uint8), ValueError, "empty"),
    (np.zeros((4, 5, 5), np.uint8), ValueError, "5 channels"),
    (np.zeros((2, 4, 5, 3), np.uint8), ValueError, "shape"),
    (np.zeros((4, 5), np.int32), TypeError, "int32"),
    (np.zeros((4, 5), bool), TypeError, "bool"),
    (np.full((4, 5), np.nan, np.float32), ValueError, "NaN"),
    (np.full((4, 5), np.inf, np.float64), ValueError, "Inf"),
    (np.full((4, 5), 1.01, np.float32), ValueError, r"\[0, 1\].*max 1.01"),
    (np.full((4, 5), -0.5, np.float32), ValueError, r"\[0, 1\].*min -0.5"),
    (torch.zeros(3, 4, 5, dtype=torch.uint8), TypeError, "floating point"),
    (torch.zeros(4, 5), ValueError, "shape"),
    (torch.zeros(0, 3, 4, 5), ValueError, "empty"),
    (torch.zeros(6, 4, 5), ValueError, "6 channels"),
    (Image.new("P", (4, 4)), ValueError, "mode 'P'"),
    (Image.new("CMYK", (4, 4)), ValueError, "mode 'CMYK'"),
    ([[0.5]], TypeError, "list"),
])
def test_bad_images_are_refused(image, error, match):
    with pytest.raises(error, match=match):
        enhance(image, model=Sqrt())


@pytest.mark.parametrize("kwargs,error,match", [
    ({"iterations": 0}, ValueError, "iterations"), ({"iterations": 65}, ValueError, "iterations"),
    ({"iterations": 2.0}, TypeError, "iterations"), ({"iterations": True}, TypeError, "iterations"),
    ({"exposure": 0.2}, ValueError, "exposure"), ({"exposure": 0.95}, ValueError, "exposure"),
    ({"exposure": float("nan")}, ValueError, "exposure"), ({"exposure": "0.5"}, TypeError, "exposure"),
    ({"tile": -1}, ValueError, "tile"), ({"tile": 1.5}, ValueError, "tile"),
    ({"device": "bogus"}, ValueError, "device"), ({"device": "tpu"}, ValueError, "device"),
    ({"model": 3}, TypeError, "model"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
    kwargs.setdefault("model", Sqrt())
    with pytest.raises(error, match=match):
        enhance(np.zeros((4, 4, 3), np.uint8), **kwargs)


def test_numpy_integer_controls_accepted():
    out = enhance(np.zeros((4, 4, 3), np.uint8), model=Sqrt(), iterations=np.int64(4), exposure=np.float32(0.5))
    assert out.shape == (4, 4, 3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is missing")
def test_cuda_requested_without_cuda():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        enhance(np.zeros((4, 4, 3), np.uint8), model=Sqrt(), device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensor_stays_on_cuda_and_matches_cpu():
    x = torch.rand(1, 3, 40, 30)
    net = LocalNet()
    cpu = enhance(x, model=net, device="cpu")
    gpu = enhance(x.cuda(), model=net, tile=16)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
    assert enhance(x, model=net, device="cuda").device.type == "cpu"  # computed on the GPU, returned as given


def test_package_attribute_is_the_function():
    import lowlight_core.inference  # noqa: F401  (importing the module must not shadow the function)

    out = lowlight_core.enhance(np.full((2, 2, 3), 64, np.uint8), model=Sqrt())
    assert (out == 128).all()


# ---------------------------------------------------------------- with the registered models

@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """Weights files of randomly initialised networks (trained weights need not exist for these tests)."""
    from lowlight_core.models.registry import get_model_info, save_weights

    folder = tmp_path_factory.mktemp("weights")

    def make(name):
        torch.manual_seed(0)
        path = folder / f"{name}.pt"
        if not path.exists():
            save_weights(get_model_info(name).build(), name, path, {"note": "random init, for tests"})
        return path

    return make


@pytest.mark.parametrize("name", ["zero_dce", "dln", "iqe_dcgan"])
def test_registered_full_resolution_models_tile_exactly(random_weights, name):
    x = torch.rand(1, 3, 60, 45)
    weights = random_weights(name)
    whole = enhance(x, model=name, weights=weights, tile=0)
    tiled = enhance(x, model=name, weights=weights, tile=32)  # 2 x 2 tiles
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
    assert not torch.equal(whole, x)


def test_zero_dce_pp_runs_whole_at_any_size(random_weights):
    a = _array((37, 29, 4), np.uint16)
    out = enhance(a, model="zero_dce_pp", weights=random_weights("zero_dce_pp"), iterations=3, exposure=0.7)
    assert out.shape == a.shape and out.dtype == np.uint16
    np.testing.assert_array_equal(out[..., 3], a[..., 3])


@pytest.mark.parametrize("image", [_array((20, 24), np.uint8), _array((20, 24, 4), np.uint16),
                                   torch.rand(2, 3, 20, 24, dtype=torch.float64)])
def test_gamma_by_name_keeps_kind_and_follows_exposure(image):
    dark = enhance(image, model="gamma", exposure=0.3)
    bright = enhance(image, model="gamma", exposure=0.9)
    assert type(dark) is type(image) and dark.shape == image.shape and dark.dtype == image.dtype
    mean = (lambda v: float(v[..., :1].astype(np.float64).mean())) if isinstance(image, np.ndarray) else \
        (lambda v: float(v[:, :1].mean()))
    assert mean(bright) > mean(dark)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'nope'.*zero_dce_pp"):
        enhance(np.zeros((4, 4, 3), np.uint8), model="nope")


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.*lowlight train zero_dce"):
        enhance(np.zeros((4, 4, 3), np.uint8), model="zero_dce", weights=tmp_path / "none.pt")


# ---------------------------------------------------------------- the CPU inference copy (issue 15 item 4)

@pytest.fixture(scope="module")
def varied_norm_weights(tmp_path_factory):
    """Weights of small networks whose BatchNorm layers hold non-trivial statistics (a fresh norm is the
    identity, which would let a wrong fold pass)."""
    from lowlight_core.models.registry import get_model_info, save_weights

    folder = tmp_path_factory.mktemp("weights")
    configs = {"dln": {"width": 8, "blocks": 2}, "iqe_dcgan": {"width": 8, "blocks": 2},
               "enlightengan": {"width": 4, "depth": 2}, "zero_dce": {}}
    paths = {}
    for i, (name, config) in enumerate(configs.items()):
        torch.manual_seed(i)
        net = get_model_info(name).build(**config)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                torch.nn.init.uniform_(m.weight, 0.5, 1.5)
                torch.nn.init.uniform_(m.bias, -0.2, 0.2)
        paths[name] = folder / f"{name}.pt"
        save_weights(net.eval(), name, paths[name])
    return paths


@pytest.mark.parametrize("name", ["dln", "iqe_dcgan", "enlightengan", "zero_dce"])
def test_inference_copy_gives_the_models_output(varied_norm_weights, name):
    from lowlight_core.models.base import inference_model
    from lowlight_core.models.registry import load_model

    net = load_model(name, weights=varied_norm_weights[name])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = inference_model(net)
    assert fast is not net and inference_model(net) is fast  # made once per model object
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules()) == 0
    assert norms == {"dln": 0, "iqe_dcgan": 2 * 2, "enlightengan": 3 * 2 + 2 * 2, "zero_dce": 0}[name]
    x = torch.rand(1, 3, 67, 53)
    with torch.inference_mode():
        plain = net.enhance(x, exposure=0.7)
        quick = fast.enhance(x.contiguous(memory_format=torch.channels_last), exposure=0.7)
    torch.testing.assert_close(quick, plain, atol=2e-5, rtol=0)
    assert not torch.equal(plain, x.clamp(0, 1))
    after = net.state_dict()  # the registry's shared object is untouched
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # enhance by name runs the copy (channels_last tiles); by module, the module as given: same image
    image = _array((70, 90, 3), np.uint8)
    by_name = enhance(image, model=name, weights=varied_norm_weights[name], exposure=0.7, tile=32)
    as_given = enhance(image, model=net, exposure=0.7, tile=32)
    assert np.abs(by_name.astype(int) - as_given).max() <= 1


def test_default_tile_is_the_networks_own(random_weights, monkeypatch):
    import lowlight_core.plan as plan

    cores = []
    real = plan.windows

    def recording(height, width, core, halo):
        cores.append((core, halo))
        return real(height, width, core, halo)

    monkeypatch.setattr(plan, "windows", recording)
    image = _array((300, 280, 3), np.uint8)
    small_tiles = enhance(image, model="zero_dce", weights=random_weights("zero_dce"))  # measured fastest: 256
    big_tiles = enhance(image, model="zero_dce", weights=random_weights("zero_dce"), tile=512)
    enhance(image, model="dln", weights=random_weights("dln"))
    assert cores == [(256, 7), (512, 7), (512, 31)]
    assert np.abs(small_tiles.astype(int) - big_tiles).max() <= 1
