"""bilateral_apply (the bilateral-grid model's full-resolution apply): the native kernel against
reference.bilateral_apply on every image dtype, channel count, layout and odd size, grid shapes from 1 x 1 x 1 up,
guidance outside [0, 1]; gradcheck of the reference (the training path), opcheck, torch.compile, and bad input
refused alike by the kernel and its fake."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from conftest import CUDA
from lowlight_core import ops, reference
from test_photo import photo_views, rand_photo

DTYPES = [torch.uint8, torch.uint16, torch.float16, torch.bfloat16, torch.float32, torch.float64]
# The kernel applies the trilinear weights as nested lerps, grid_sample as eight products: a float result a few
# float steps apart moves an integer result across a rounding boundary now and then (1 level, in few values;
# uint16 has 257 times as many boundaries). Fraction of values allowed 1 level off:
MAX_OFF_BY_ONE = {torch.uint8: 1e-3, torch.uint16: 1e-2}
FLOAT_ATOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-3, torch.bfloat16: 8e-3}
GUIDES = {"inside": (0.25, 0.5, 0.25, 0.0),
          # most pixels' guidance below 0 or above 1: the clamp to the first / last depth cell
          "outside": (1.5, 1.2, 0.9, -0.8)}


def rand_grid(B, D, Gh, Gw, seed=2, device="cpu"):
    """(B, 12, D, Gh, Gw) float32: about the identity transform, times a gain of 0.5-2.5, plus colour noise."""
    g = torch.Generator().manual_seed(seed)
    eye = torch.eye(3, 4).reshape(1, 12, 1, 1, 1)
    gain = 0.5 + 2 * torch.rand(B, 1, D, Gh, Gw, generator=g)
    noise = 0.3 * (torch.rand(B, 12, D, Gh, Gw, generator=g) - 0.5)
    return (eye * gain + noise).to(device)


def guide_of(name, device="cpu"):
    return torch.tensor(GUIDES[name], device=device)


def assert_bilateral_close(got, expected):
    """Integers: at most 1 level apart in at most MAX_OFF_BY_ONE[dtype] of the values; floats: within FLOAT_ATOL. Always
    the same dtype and strides (torch.empty_like(image))."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    got, expected = got.cpu(), expected.cpu()
    if got.dtype.is_floating_point:
        torch.testing.assert_close(got, expected, rtol=0, atol=FLOAT_ATOL[got.dtype])
        return
    diff = (got.to(torch.int64) - expected.to(torch.int64)).abs()
    assert int(diff.max()) <= 1
    assert int((diff > 0).sum()) <= MAX_OFF_BY_ONE[got.dtype] * diff.numel() + 2, f"{int((diff > 0).sum())} values differ"


# (image shape, grid (D, Gh, Gw)): the model's grid on odd sizes, rows longer than a staged chunk, gray / gray +
# alpha / RGBA, a 1 x 1 x 1 grid, non-square grids, cells narrower than a vector, more than 16 depths (the
# kernel's scalar path), a 1 x 1 image
CASES = [
    ((2, 3, 37, 53), (8, 16, 16)),
    ((1, 3, 29, 301), (8, 5, 7)),
    ((2, 1, 33, 17), (4, 3, 2)),
    ((1, 2, 23, 9), (8, 4, 3)),
    ((2, 4, 11, 47), (6, 2, 9)),
    ((1, 3, 5, 6), (1, 1, 1)),
    ((1, 4, 19, 40), (3, 1, 12)),
    ((1, 3, 13, 21), (20, 3, 4)),
    ((1, 1, 1, 1), (2, 2, 2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,gs", CASES)
@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_bilateral_apply_parity(native, dtype, shape, gs, guide):
    image = rand_photo(shape, dtype)
    grid, w = rand_grid(shape[0], *gs), guide_of(guide)
    expected = reference.bilateral_apply(image, grid, w)
    color = reference.photo_color_channels(shape[1])
    for name, view in photo_views(image):
        got = native.bilateral_apply(view, grid, w)
        assert got.stride() == torch.empty_like(view).stride(), name
        assert_bilateral_close(got, expected)
        assert torch.equal(got[:, color:], view[:, color:]), f"{name}: alpha channels not copied bit for bit"


def test_bilateral_apply_the_models_grid_at_a_photos_size(native):
    """A 12 x 8 x 16 x 16 grid on a 403 x 611 H x W x 3 uint8 photo (many chunks, cell edges inside vectors)."""
    image = rand_photo((1, 3, 403, 611), torch.uint8).contiguous(memory_format=torch.channels_last)
    grid = rand_grid(1, 8, 16, 16)
    for name in GUIDES:
        got = native.bilateral_apply(image, grid, guide_of(name))
        assert_bilateral_close(got, reference.bilateral_apply(image, grid, guide_of(name)))


def test_bilateral_apply_identity_grid_returns_the_image(native):
    """A = [I | 0] in every cell: every uint8 / uint16 value comes back unchanged, whatever the guidance."""
    eye = torch.eye(3, 4).reshape(1, 12, 1, 1, 1).expand(1, 12, 5, 3, 4).contiguous()
    for dtype, top in ((torch.uint8, 255), (torch.uint16, 65535)):
        values = torch.arange(top + 1).to(dtype)
        image = values.view(1, 1, 1, -1).expand(1, 3, 2, -1).contiguous()
        for name in GUIDES:
            assert torch.equal(native.bilateral_apply(image, eye, guide_of(name)), image)


def test_bilateral_apply_batch_uses_each_images_grid(native):
    image = rand_photo((3, 3, 12, 15), torch.uint8)
    grid, w = rand_grid(3, 4, 2, 3), guide_of("inside")
    whole = native.bilateral_apply(image, grid, w)
    for b in range(3):
        assert torch.equal(whole[b:b + 1], native.bilateral_apply(image[b:b + 1], grid[b:b + 1], w))
    assert not torch.equal(whole[0], native.bilateral_apply(image[:1], grid[1:2], w)[0])


def test_bilateral_apply_empty_batch(native):
    image = torch.zeros(0, 3, 5, 4, dtype=torch.uint8)
    assert native.bilateral_apply(image, torch.zeros(0, 12, 2, 2, 2), guide_of("inside")).shape == image.shape


def test_ops_bilateral_apply_dispatch(native):
    """ops.bilateral_apply: the kernel for inference (a float64 grid narrowed for a uint8 image, exactly as the
    reference narrows it), the differentiable reference when a gradient is wanted."""
    image = rand_photo((1, 3, 9, 14), torch.uint8)
    grid, w = rand_grid(1, 4, 3, 3), guide_of("inside")
    assert torch.equal(ops.bilateral_apply(image, grid.double(), w.double()), native.bilateral_apply(image, grid, w))
    x = rand_photo((1, 3, 9, 14), torch.float32)
    g = grid.clone().requires_grad_()
    out = ops.bilateral_apply(x, g, w)
    assert out.grad_fn is not None
    out.sum().backward()
    g_ref = grid.clone().requires_grad_()
    reference.bilateral_apply(x, g_ref, w).sum().backward()
    assert torch.equal(g.grad, g_ref.grad)
    with torch.no_grad():
        assert torch.equal(ops.bilateral_apply(x, g, w), native.bilateral_apply(x, grid, w))


@pytest.mark.parametrize("shape,gs", [((1, 3, 5, 7), (3, 2, 3)), ((2, 1, 4, 5), (2, 3, 2)), ((1, 4, 3, 4), (1, 1, 1))])
def test_bilateral_reference_gradcheck(shape, gs):
    """The training path: the float64 reference is differentiable in grid, guide and a float image (guidance kept
    inside (0, 1), away from the clamp's kinks)."""
    x = (0.1 + 0.8 * rand_photo(shape, torch.float64)).requires_grad_()
    grid = rand_grid(shape[0], *gs).double().requires_grad_()
    w = torch.tensor([0.3, 0.4, 0.2, 0.05], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(reference.bilateral_apply, (x, grid, w))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))])
def test_bilateral_apply_opcheck_and_compile(native, device):
    image = rand_photo((2, 4, 9, 7), torch.uint8, device).contiguous(memory_format=torch.channels_last)
    grid, w = rand_grid(2, 4, 3, 2, device=device), guide_of("outside", device)
    torch.library.opcheck(native.bilateral_apply, (image, grid, w))
    torch.library.opcheck(native.bilateral_apply, (rand_photo((1, 1, 9, 7), torch.float32, device),
                                                   rand_grid(1, 1, 1, 1, device=device), w))

    def run(image, grid, w):
        return ops.bilateral_apply(image, grid, w)

    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(image, grid, w), run(image, grid, w))


@pytest.mark.skipif(not CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,gs", CASES)
def test_bilateral_apply_cuda_parity(native, dtype, shape, gs):
    assert ops.cuda_built(), "lowlight_core._C was built without CUDA (build with FORCE_CUDA=1)"
    image = rand_photo(shape, dtype)
    grid, w = rand_grid(shape[0], *gs), guide_of("outside")
    for name, view in photo_views(image):
        got = native.bilateral_apply(view.cuda(), grid.cuda(), w.cuda())
        assert got.device.type == "cuda" and got.stride() == torch.empty_like(view).stride(), name
        assert_bilateral_close(got, reference.bilateral_apply(view, grid, w))


# Bad input for the op itself: (image, grid, guide) built from good ones, and the words the error must contain.
# The kernel (RuntimeError from TORCH_CHECK) and its fake (torch._check) must refuse each one alike.
BAD = [
    (lambda i, g, w: (i[0], g, w), "image must be 4-D"),
    (lambda i, g, w: (i.to(torch.int32), g, w), "image must be"),
    (lambda i, g, w: (torch.cat([i, i], 1), g, w), "1-4 channels"),
    (lambda i, g, w: (i[:, :, :0], g, w), "empty dimension"),
    (lambda i, g, w: (i, g[:, :, 0], w), "grid must be 5-D"),
    (lambda i, g, w: (i, g.double(), w), "grid must be float32"),
    (lambda i, g, w: (i, torch.cat([g, g]), w), "grid batch"),
    (lambda i, g, w: (i, g[:, :11], w), "12 coefficients"),
    (lambda i, g, w: (i, g[:, :, :0], w), "grid has an empty dimension"),
    (lambda i, g, w: (i, g, w[:3]), "guide must be \\(4,\\)"),
    (lambda i, g, w: (i, g, w.double()), "guide must be float32"),
]


def good_inputs():
    return rand_photo((1, 3, 8, 8), torch.uint8), rand_grid(1, 2, 2, 2), guide_of("inside")


@pytest.mark.parametrize("make,match", BAD)
def test_bilateral_apply_kernel_and_fake_refuse_alike(native, make, match):
    args = make(*good_inputs())
    with pytest.raises(RuntimeError, match=match):
        native.bilateral_apply(*args)
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(t) for t in args]
        with pytest.raises(RuntimeError, match=match):
            native.bilateral_apply(*fake)


@pytest.mark.parametrize("make,exc,match", [
    (lambda i, g, w: (i[0], g, w), ValueError, "image must be 4-D"),
    (lambda i, g, w: (i.to(torch.int32), g, w), TypeError, "uint8, uint16 or floating"),
    (lambda i, g, w: (torch.cat([i, i], 1), g, w), ValueError, "1-4 channels"),
    (lambda i, g, w: (i, g.to(torch.int32), w), TypeError, "grid must be floating point"),
    (lambda i, g, w: (i, g[:, :11], w), ValueError, "grid must be \\(B, 12"),
    (lambda i, g, w: (i, torch.cat([g, g]), w), ValueError, "grid must be \\(B, 12"),
    (lambda i, g, w: (i, g, w[:3]), ValueError, "guide must be \\(4,\\)"),
    (lambda i, g, w: (i, g.to("meta"), w), ValueError, "grid is on meta"),
    (lambda i, g, w: (i, g, None), TypeError, "guide must be a torch.Tensor"),
])
def test_ops_bilateral_apply_bad_input(native, make, exc, match):
    with pytest.raises(exc, match=match):
        ops.bilateral_apply(*make(*good_inputs()))
