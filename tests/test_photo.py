"""The photo path: photo_curve, photo_value_curve and area_reduce (native) against the pure-PyTorch reference,
to the last integer level, on every dtype, channel count, layout and odd size; opcheck, torch.compile, bad
input; and the Zero-DCE++ estimate from the integer image against the float path the shipped weights were
trained with."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DEVICES
import lowlight_core
from lowlight_core import ops, reference
from lowlight_core.plan import Engine

DTYPES = [torch.uint8, torch.uint16, torch.float32, torch.float64]
SAMPLE = Path(__file__).parents[1] / "lowlight_core" / "data" / "sample_dark.png"
# ATen's bilinear resize of alpha has several code paths (by output size and thread count) that round
# differently; the kernel reproduces the generic one bit for bit. Elsewhere an alpha value one float step
# apart moves a result across a rounding boundary now and then: at most 1 level, in few values.
MAX_OFF_BY_ONE = 2e-3  # fraction of values


def rand_photo(shape, dtype, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.rand(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    top = 255 if dtype == torch.uint8 else 65535
    return torch.randint(0, top + 1, shape, generator=g).to(device=device, dtype=dtype)


def rand_alpha(B, k, h, w, device="cpu", seed=1, channels=3):
    """(B, channels * k, h, w) curve maps in [-1, 1]: RGB maps (photo_curve) or channels=1 (photo_value_curve)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, channels * k, h, w, generator=g) * 2 - 1).to(device)


def photo_views(t):
    """The same values as NCHW, as an H x W x C photo (channels_last), as a crop of a bigger photo (row
    strides larger than the row) and as a non-dense view (every other column)."""
    B, C, H, W = t.shape
    yield "nchw", t
    yield "hwc", t.contiguous(memory_format=torch.channels_last)
    big = torch.zeros(B, H + 3, W + 5, C, dtype=t.dtype, device=t.device)
    crop = big[:, 2:2 + H, 1:1 + W].permute(0, 3, 1, 2)
    crop.copy_(t)
    yield "hwc crop", crop
    wide = torch.zeros(B, C, H, 2 * W, dtype=t.dtype, device=t.device)
    strided = wide[..., ::2]
    strided.copy_(t)
    yield "strided", strided


def assert_photo_equal(got, expected, exact=False):
    """Integers: equal, or (exact=False) at most 1 level apart in at most MAX_OFF_BY_ONE of the values;
    floats: equal, or within 2e-6 (alpha a float step apart, through n steps). Always the same dtype and strides."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.stride() == torch.empty_like(expected).stride()
    got, expected = got.cpu(), expected.cpu()
    if got.dtype.is_floating_point:
        torch.testing.assert_close(got, expected, rtol=0, atol=0 if exact else 2e-6)
        return
    diff = (got.to(torch.int64) - expected.to(torch.int64)).abs()
    if exact:
        assert int(diff.max()) == 0, f"{int((diff > 0).sum())} values differ"
    else:
        assert int(diff.max()) <= 1
        assert int((diff > 0).sum()) <= MAX_OFF_BY_ONE * diff.numel() + 2, f"{int((diff > 0).sum())} values differ"


# (image shape, alpha (k, h, w), iterations): low-res shared map (Zero-DCE++), per-step full-res maps
# (Zero-DCE: no resize, exact), fewer maps than steps, alpha larger than the image, 1 x 1
CASES = [
    ((2, 3, 37, 53), (1, 4, 5), 8),
    ((1, 4, 67, 131), (1, 6, 8), 8),
    ((2, 1, 33, 17), (1, 3, 2), 5),
    ((1, 2, 23, 9), (2, 4, 3), 7),
    ((1, 3, 29, 31), (8, 29, 31), 8),
    ((2, 4, 11, 7), (3, 11, 7), 6),
    ((1, 3, 5, 6), (1, 9, 11), 4),
    ((1, 1, 1, 1), (1, 1, 1), 2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ak,n", CASES)
def test_photo_curve_parity(native, dtype, shape, ak, n):
    image = rand_photo(shape, dtype)
    alpha = rand_alpha(shape[0], *ak)
    full_res = ak[1:] == shape[2:]
    expected = reference.photo_curve(image, alpha, n)
    for name, view in photo_views(image):
        got = native.photo_curve(view, alpha, n)
        ref = reference.photo_curve(view, alpha, n)
        assert torch.equal(ref, expected), name  # the reference itself is layout independent
        assert_photo_equal(got, ref, exact=full_res)
        color = reference.photo_color_channels(shape[1])
        assert torch.equal(got[:, color:], view[:, color:]), f"{name}: alpha channels not copied bit for bit"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ak,n", CASES)
def test_photo_curve_cuda_parity(native, dtype, shape, ak, n):
    assert ops.cuda_built(), "lowlight_core._C was built without CUDA (build with FORCE_CUDA=1)"
    image = rand_photo(shape, dtype)
    alpha = rand_alpha(shape[0], *ak)
    for name, view in photo_views(image):
        got = native.photo_curve(view.cuda(), alpha.cuda(), n)
        assert got.device.type == "cuda"
        assert_photo_equal(got, reference.photo_curve(view, alpha, n))  # float math in another order


def test_photo_curve_generic_resize_is_exact(native):
    """Big enough for ATen's generic bilinear path (output height + width > 128) with 2 threads: the kernel
    reproduces F.interpolate's alpha bit for bit, so every value equals the reference."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for dtype in DTYPES:
            for C in (1, 3, 4):
                image = rand_photo((2, C, 67, 131), dtype).contiguous(memory_format=torch.channels_last)
                alpha = rand_alpha(2, 1, 5, 7)
                assert_photo_equal(native.photo_curve(image, alpha, 8), reference.photo_curve(image, alpha, 8),
                                   exact=True)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16])
def test_photo_curve_every_integer_value(native, dtype):
    """Every uint8 / uint16 value through the kernel's division-free scaling and its rounding, for a
    brightening, a darkening and a neutral curve: equal to the reference."""
    top = 255 if dtype == torch.uint8 else 65535
    values = torch.arange(top + 1).to(dtype)
    image = values.view(1, 1, 1, -1).expand(1, 3, 3, -1).contiguous()
    alpha = torch.tensor([0.9, -0.6, 0.0]).view(1, 3, 1, 1).expand(1, 3, 3, top + 1).contiguous()
    for n in (1, 8):
        assert_photo_equal(native.photo_curve(image, alpha, n), reference.photo_curve(image, alpha, n), exact=True)
    assert torch.equal(native.photo_curve(image, torch.zeros_like(alpha), 8), image)  # the identity curve


def test_photo_curve_gray_is_the_mean_of_the_rgb_curves(native):
    gray = rand_photo((1, 1, 9, 10), torch.uint8)
    alpha = rand_alpha(1, 1, 3, 4)
    rgb = native.photo_curve(gray.expand(1, 3, 9, 10).contiguous(), alpha, 8).double()
    mean = (rgb.mean(dim=1, keepdim=True)).round()
    assert (native.photo_curve(gray, alpha, 8).double() - mean).abs().max() <= 1  # rounded twice vs once


def test_photo_curve_batch_uses_each_images_maps(native):
    image = rand_photo((3, 3, 12, 15), torch.uint8)
    alpha = rand_alpha(3, 1, 2, 2)
    whole = native.photo_curve(image, alpha, 8)
    for b in range(3):
        assert torch.equal(whole[b:b + 1], native.photo_curve(image[b:b + 1], alpha[b:b + 1], 8))


def test_photo_curve_empty_batch(native):
    image = torch.zeros(0, 3, 5, 4, dtype=torch.uint8)
    assert native.photo_curve(image, torch.zeros(0, 3, 2, 2), 8).shape == image.shape


@pytest.mark.parametrize("device", DEVICES)
def test_photo_curve_opcheck_and_compile(native, device):
    image = rand_photo((2, 4, 9, 7), torch.uint8, device).contiguous(memory_format=torch.channels_last)
    alpha = rand_alpha(2, 1, 3, 2, device)
    torch.library.opcheck(native.photo_curve, (image, alpha, 8))
    torch.library.opcheck(native.photo_curve, (rand_photo((1, 1, 9, 7), torch.uint16, device),
                                               rand_alpha(1, 8, 9, 7, device), 8))
    if device == "cpu":
        torch.library.opcheck(native.area_reduce, (image, 3, 2))

    def run(image, alpha):
        return ops.photo_curve(image, alpha, 8)

    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(image, alpha), run(image, alpha))


@pytest.mark.parametrize("make,exc,match", [
    (lambda i, a: ops.photo_curve(i[0], a, 8), ValueError, "image must be 4-D"),
    (lambda i, a: ops.photo_curve(i.to(torch.int32), a, 8), TypeError, "uint8, uint16 or floating"),
    (lambda i, a: ops.photo_curve(torch.cat([i, i], 1), a, 8), ValueError, "1-4 channels"),
    (lambda i, a: ops.photo_curve(i, a.double(), 8), TypeError, "alpha must be float32"),
    (lambda i, a: ops.photo_curve(i, a[:, :2], 8), ValueError, "3\\*k channels"),
    (lambda i, a: ops.photo_curve(i, a.expand(2, -1, -1, -1), 8), ValueError, "batch"),
    (lambda i, a: ops.photo_curve(i, a, 0), ValueError, "iterations"),
    (lambda i, a: ops.photo_curve(i, a, 65), ValueError, "iterations"),
    (lambda i, a: ops.photo_curve(i, a.to("meta"), 8), ValueError, "alpha is on meta"),
    (lambda i, a: ops.photo_curve(i[:, :, :0], a, 8), ValueError, "empty"),
    (lambda i, a: ops.area_reduce(i, 0, 3), ValueError, "height"),
    (lambda i, a: ops.area_reduce(i.to(torch.int16), 2, 3), TypeError, "uint8, uint16 or floating"),
])
def test_photo_bad_input(native, make, exc, match):
    image, alpha = rand_photo((1, 3, 8, 8), torch.uint8), rand_alpha(1, 1, 2, 2)
    with pytest.raises(exc, match=match):
        make(image, alpha)


@pytest.mark.parametrize("call", [
    lambda n: n.photo_curve(torch.zeros(1, 3, 4, 4, dtype=torch.int32), torch.zeros(1, 3, 2, 2), 8),
    lambda n: n.photo_curve(torch.zeros(1, 5, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 2, 2), 8),
    lambda n: n.photo_curve(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 4, 2, 2), 8),
    lambda n: n.photo_curve(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 2, 2).double(), 8),
    lambda n: n.photo_curve(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 2, 2), 99),
    lambda n: n.area_reduce(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 0, 2),
    lambda n: n.area_reduce(torch.zeros(1, 3, 4, 4, dtype=torch.int32), 2, 2),
])
def test_photo_native_checks_raise_not_crash(native, call):
    with pytest.raises(RuntimeError):
        call(native)


# ---------------------------------------------------------------- photo_value_curve (models that curve the value)

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ak,n", CASES)
def test_photo_value_curve_parity(native, dtype, shape, ak, n):
    image = rand_photo(shape, dtype)
    alpha = rand_alpha(shape[0], *ak, channels=1)
    full_res = ak[1:] == shape[2:]
    expected = reference.photo_value_curve(image, alpha, n)
    for name, view in photo_views(image):
        got = native.photo_value_curve(view, alpha, n)
        ref = reference.photo_value_curve(view, alpha, n)
        assert torch.equal(ref, expected), name  # the reference itself is layout independent
        assert_photo_equal(got, ref, exact=full_res)
        color = reference.photo_color_channels(shape[1])
        assert torch.equal(got[:, color:], view[:, color:]), f"{name}: alpha channels not copied bit for bit"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ak,n", CASES)
def test_photo_value_curve_cuda_parity(native, dtype, shape, ak, n):
    assert ops.cuda_built(), "lowlight_core._C was built without CUDA (build with FORCE_CUDA=1)"
    image = rand_photo(shape, dtype)
    alpha = rand_alpha(shape[0], *ak, channels=1)
    for name, view in photo_views(image):
        got = native.photo_value_curve(view.cuda(), alpha.cuda(), n)
        assert got.device.type == "cuda"
        assert_photo_equal(got, reference.photo_value_curve(view, alpha, n))  # float math in another order


def test_photo_value_curve_generic_resize_is_exact(native):
    """As test_photo_curve_generic_resize_is_exact: every layout the vector loops take (planar gray and RGB,
    interleaved gray + alpha, RGB, RGBA), widths with a vector tail and a scalar tail."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for dtype in DTYPES:
            for C in (1, 2, 3, 4):
                for memory_format in (torch.contiguous_format, torch.channels_last):
                    image = rand_photo((2, C, 67, 131), dtype).contiguous(memory_format=memory_format)
                    alpha = rand_alpha(2, 2, 5, 7, channels=1)
                    assert_photo_equal(native.photo_value_curve(image, alpha, 8),
                                       reference.photo_value_curve(image, alpha, 8), exact=True)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16])
def test_photo_value_curve_every_integer_value(native, dtype):
    """Every uint8 / uint16 value as the maximum of a pixel (red), with green and blue below it, for a
    brightening, a darkening and a neutral curve: equal to the reference; alpha 0 is the identity."""
    top = 255 if dtype == torch.uint8 else 65535
    values = torch.arange(top + 1)
    image = torch.stack([values, values // 2, values // 7]).to(dtype).view(1, 3, 1, -1).expand(1, 3, 3, -1)
    image = image.contiguous(memory_format=torch.channels_last)
    alpha = torch.tensor([0.9, -0.6, 0.0]).view(1, 1, 3, 1).expand(1, 1, 3, top + 1).contiguous()
    for n in (1, 8):
        assert_photo_equal(native.photo_value_curve(image, alpha, n), reference.photo_value_curve(image, alpha, n),
                           exact=True)
    assert torch.equal(native.photo_value_curve(image, torch.zeros_like(alpha), 8), image)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16])
@pytest.mark.parametrize("color", [1, 3])
def test_photo_value_curve_keeps_every_alpha_value(native, dtype, color):
    """Interleaved gray + alpha and RGBA integer photos (their row kernel stores alpha with the colour values):
    every uint8 / uint16 value of the alpha channel comes back unchanged, in the vector body of the row and in
    its scalar tail (the last 7 pixels)."""
    top = 255 if dtype == torch.uint8 else 65535
    values = torch.arange(top + 1)
    alpha_channel = torch.cat([values, values[:7]])
    width = alpha_channel.numel()
    colour = torch.arange(width).remainder(top // 2).expand(color, width)
    image = torch.cat([colour, alpha_channel[None]]).to(dtype).view(1, color + 1, 1, width)
    image = image.contiguous(memory_format=torch.channels_last)
    alpha = torch.full((1, 1, 1, width), 0.7)
    got = native.photo_value_curve(image, alpha, 8)
    assert torch.equal(got[:, color:], image[:, color:])
    assert_photo_equal(got, reference.photo_value_curve(image, alpha, 8), exact=True)


def test_photo_value_curve_is_the_models_value_curve(native):
    """The reference is value_curve (what the models train with) with each step's maps averaged over RGB,
    clamped: on float images they agree to float rounding, so the op is the model's curve."""
    from lowlight_core.models.zero_dce import value_curve

    x = rand_photo((2, 3, 19, 23), torch.float32)
    alpha = rand_alpha(2, 2, 4, 5)
    mean = alpha.unflatten(1, (-1, 3)).mean(2).contiguous()
    torch.testing.assert_close(reference.photo_value_curve(x, mean, 6), value_curve(x, alpha, 6).clamp(0, 1),
                               rtol=0, atol=1e-6)


def test_photo_value_curve_gray_is_rgb_gray(native):
    """A gray pixel is its own value: gray in equals each channel of the same gray as RGB, exactly (no mean)."""
    gray = rand_photo((1, 1, 9, 37), torch.uint8)
    alpha = rand_alpha(1, 1, 3, 4, channels=1)
    rgb = native.photo_value_curve(gray.expand(1, 3, 9, 37).contiguous(), alpha, 8)
    got = native.photo_value_curve(gray, alpha, 8)
    for c in range(3):
        assert torch.equal(got, rgb[:, c:c + 1])
    assert not torch.equal(got, gray)


def test_photo_value_curve_keeps_the_channel_ratios(native):
    """One gain per pixel: colour ratios stay the input's (float image, away from the clamp)."""
    x = rand_photo((1, 3, 8, 33), torch.float32) * 0.5 + 0.05
    y = native.photo_value_curve(x, torch.full((1, 1, 2, 2), 0.5), 8)
    assert float(y.amax()) < 1
    torch.testing.assert_close(y / x, (y / x)[:, :1].expand(-1, 3, -1, -1), rtol=1e-5, atol=0)
    assert float((y / x).min()) > 1.2  # it did brighten


def test_photo_value_curve_batch_uses_each_images_maps(native):
    image = rand_photo((3, 3, 12, 35), torch.uint8).contiguous(memory_format=torch.channels_last)
    alpha = rand_alpha(3, 1, 2, 2, channels=1)
    whole = native.photo_value_curve(image, alpha, 8)
    for b in range(3):
        assert torch.equal(whole[b:b + 1], native.photo_value_curve(image[b:b + 1], alpha[b:b + 1], 8))


def test_photo_value_curve_empty_batch(native):
    image = torch.zeros(0, 3, 5, 4, dtype=torch.uint8)
    assert native.photo_value_curve(image, torch.zeros(0, 1, 2, 2), 8).shape == image.shape


@pytest.mark.parametrize("device", DEVICES)
def test_photo_value_curve_opcheck_and_compile(native, device):
    image = rand_photo((2, 4, 9, 37), torch.uint8, device).contiguous(memory_format=torch.channels_last)
    alpha = rand_alpha(2, 1, 3, 2, device, channels=1)
    torch.library.opcheck(native.photo_value_curve, (image, alpha, 8))
    torch.library.opcheck(native.photo_value_curve, (rand_photo((1, 1, 9, 7), torch.uint16, device),
                                                     rand_alpha(1, 8, 9, 7, device, channels=1), 8))
    torch.library.opcheck(native.photo_value_curve, (rand_photo((1, 3, 5, 6), torch.float32, device),
                                                     rand_alpha(1, 2, 2, 3, device, channels=1), 3))

    def run(image, alpha):
        return ops.photo_value_curve(image, alpha, 8)

    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(image, alpha), run(image, alpha))


@pytest.mark.parametrize("make,exc,match", [
    (lambda i, a: ops.photo_value_curve(i[0], a, 8), ValueError, "photo_value_curve: image must be 4-D"),
    (lambda i, a: ops.photo_value_curve(i.to(torch.int32), a, 8), TypeError, "uint8, uint16 or floating"),
    (lambda i, a: ops.photo_value_curve(torch.cat([i, i], 1), a, 8), ValueError, "1-4 channels"),
    (lambda i, a: ops.photo_value_curve(i, a[0], 8), ValueError, "alpha must be 4-D"),
    (lambda i, a: ops.photo_value_curve(i, a.double(), 8), TypeError, "alpha must be float32"),
    (lambda i, a: ops.photo_value_curve(i, a.expand(2, -1, -1, -1), 8), ValueError, "batch"),
    (lambda i, a: ops.photo_value_curve(i, a, 0), ValueError, "iterations"),
    (lambda i, a: ops.photo_value_curve(i, a.to("meta"), 8), ValueError, "alpha is on meta"),
    (lambda i, a: ops.photo_value_curve(i, a[:, :, :0], 8), ValueError, "empty"),
])
def test_photo_value_curve_bad_input(native, make, exc, match):
    image, alpha = rand_photo((1, 3, 8, 8), torch.uint8), rand_alpha(1, 1, 2, 2, channels=1)
    with pytest.raises(exc, match=match):
        make(image, alpha)


@pytest.mark.parametrize("call,match", [
    (lambda n: n.photo_value_curve(torch.zeros(1, 3, 4, 4, dtype=torch.int32), torch.zeros(1, 1, 2, 2), 8), "uint8"),
    (lambda n: n.photo_value_curve(torch.zeros(1, 5, 4, 4, dtype=torch.uint8), torch.zeros(1, 1, 2, 2), 8), "1-4"),
    (lambda n: n.photo_value_curve(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 0, 2, 2), 8), "k >= 1"),
    (lambda n: n.photo_value_curve(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, 1, 2, 2), 8), "batch"),
    (lambda n: n.photo_value_curve(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 1, 2, 2), 99),
     "iterations"),
])
def test_photo_value_curve_native_checks_raise_not_crash(native, call, match):
    with pytest.raises(RuntimeError, match="photo_value_curve: .*" + match):
        call(native)


# ---------------------------------------------------------------- area_reduce

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size", [((2, 3, 37, 53), (5, 6)), ((1, 4, 64, 48), (8, 6)),
                                        ((1, 1, 9, 300), (9, 7)), ((2, 2, 5, 5), (5, 5)), ((1, 3, 3, 2), (7, 5))])
def test_area_reduce_parity(native, dtype, shape, size):
    image = rand_photo(shape, dtype)
    expected = reference.area_reduce(image, *size)
    for name, view in photo_views(image):
        got = native.area_reduce(view, *size)
        assert got.dtype == torch.float32 and got.shape == expected.shape and got.is_contiguous()
        if dtype.is_floating_point:  # sums in another order
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=0, msg=name)
        else:  # exact integer sums: the same float
            assert torch.equal(got, expected), name


# ---------------------------------------------------------------- Zero-DCE++ on the photo path

def test_zero_dce_pp_photo_estimate_matches_the_trained_float_path(native):
    """The shipped weights on the bundled photo: the estimate from area_reduce of the uint8 image vs the
    trained one (antialiased bilinear of the float image) changes the result by at most 1 level here, in
    few pixels (benchmarks/RESULTS.md has the measurement on real photos)."""
    from lowlight_core.models.registry import load_model

    net = load_model("zero_dce_pp", device="cpu")
    a = np.asarray(Image.open(SAMPLE).convert("RGB"))
    image = torch.from_numpy(a.copy()).permute(2, 0, 1)[None]
    with torch.no_grad():
        x = image.float() / 255
        old = net.apply_curve(x, net.estimate_alpha(x, 0.6), 8).mul(255).round().to(torch.uint8)
        new = net.enhance_photo(image, 0.6, 8)
    diff = (new.to(torch.int64) - old.to(torch.int64)).abs()
    assert int(diff.max()) <= 1 and float(diff.double().mean()) < 0.05
    assert float(new.double().mean()) > float(image.double().mean()) + 20  # it did enhance


@pytest.mark.parametrize("curve_on", ["rgb", "value"])
def test_enhance_refuses_nan_curve_maps_on_the_photo_path(native, curve_on):
    """Both curve spaces take the photo path (its own message: the float path says "NaN or Inf values")."""
    from lowlight_core.models.zero_dce_pp import ZeroDCEPP

    image = np.zeros((6, 5, 3), np.uint8)
    net = ZeroDCEPP(curve_on=curve_on)
    plan = Engine(net, torch.device("cpu")).plan(image, 0.6)
    plan.decide()  # the E input is calibrated on the probe while the weights are finite ...
    with torch.no_grad():
        net.convs[-1].pointwise.bias.fill_(float("nan"))
    assert net.contract.curve_space == curve_on
    with pytest.raises(ValueError, match="NaN or Inf curve maps"):  # ... so the photo pass meets the NaN maps
        plan.run(8)
    # enhance calibrates every exposure (auto, the default, or a target E) on the probe before the photo path
    # runs: the model's NaN result there is refused first, with the float path's message
    for exposure in ("auto", 0.6):
        with pytest.raises(ValueError, match="NaN or Inf values"):
            lowlight_core.enhance(image, model=net, exposure=exposure)
    net.config["curve_on"] = "hsv"  # a curve the photo ops do not compute: not the photo path
    assert net.contract.curve_space is None


@pytest.mark.parametrize("curve_on,op", [("rgb", "photo_curve"), ("value", "photo_value_curve")])
def test_photo_path_runs_the_models_curve(native, monkeypatch, curve_on, op):
    """enhance on a photo: the untiled (Zero-DCE++) and the tiled (Zero-DCE, full-resolution maps per tile)
    branches call the op of the model's curve space once per window, and give the float path's result
    (net.apply_curve on the float image, with the E input and tone stage the plan decides for E = 0.6) within
    1 level."""
    from lowlight_core.exposure import extend_maps
    from lowlight_core.models.zero_dce import ZeroDCE
    from lowlight_core.models.zero_dce_pp import ZeroDCEPP

    a = rand_photo((1, 45, 37, 3), torch.uint8, seed=3)[0].numpy() // 3  # a dark photo
    calls = []
    real = getattr(ops, op)
    monkeypatch.setattr(ops, op, lambda *args: calls.append(args[0].shape) or real(*args))
    for net, kwargs, windows in [(ZeroDCEPP(curve_on=curve_on), {}, 1), (ZeroDCE(curve_on=curve_on), {"tile": 16}, 9)]:
        torch.manual_seed(0)
        for p in net.parameters():  # brightening maps that vary over the image and between channels
            p.data.uniform_(-0.2, 0.2)
        calls.clear()
        got = lowlight_core.enhance(a, model=net, exposure=0.6, denoise=0, **kwargs)
        assert len(calls) == windows, type(net).__name__
        inputs, tones = Engine(net, torch.device("cpu")).plan(a, 0.6).decide()
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            y = net.apply_curve(x, *extend_maps(net.estimate_alpha(x, inputs[0]), 8, tones))
        expected = y[0].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
        diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
        assert diff.max() <= 1, type(net).__name__
        assert np.abs(got.astype(np.int64) - a).max() > 5  # the curve did something
