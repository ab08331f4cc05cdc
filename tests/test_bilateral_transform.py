"""bilateral_transform (the bilateral-grid model's training path: bilateral_apply's affine step, not clamped) and
its native backward, against reference.bilateral_transform: values and the gradients of x, grid and guide on odd
sizes, batches, non-contiguous inputs and guidance beyond the clamps; float64 gradcheck of the kernels; opcheck;
torch.compile; bad input refused alike by the kernels and their fakes; the model trains through it."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from conftest import CUDA, DEVICES
from lowlight_core import ops, reference
from lowlight_core.models.bilateral_grid import BilateralGrid
from test_bilateral_apply import GUIDES, rand_grid
from test_photo import photo_views, rand_photo

# (x shape, grid (D, Gh, Gw)): the model's grid on an odd size and a batch, a long row, 1 x 1 x 1 grids, non-square
# grids, more depths than the model's, a 1 x 1 image
CASES = [
    ((2, 3, 37, 53), (8, 16, 16)),
    ((1, 3, 29, 301), (8, 5, 7)),
    ((3, 3, 13, 21), (1, 1, 1)),
    ((1, 3, 19, 40), (3, 1, 12)),
    ((1, 3, 11, 9), (20, 3, 4)),
    ((1, 3, 1, 1), (2, 2, 2)),
]
# float32: the kernel lerps the row table (y, then x, then depth), grid_sample sums eight products, and the
# grid's gradient sums the pixels in another order
ATOL = {torch.float32: 2e-5, torch.float64: 1e-12}


def inputs(shape, gs, guide, dtype, device="cpu"):
    x = rand_photo(shape, torch.float64).to(device=device, dtype=dtype)
    grid = rand_grid(shape[0], *gs, device=device).to(dtype)
    return x, grid, torch.tensor(GUIDES[guide], dtype=dtype, device=device)


def value_and_grads(fn, x, grid, guide, grad_y):
    leaves = [t.detach().clone().requires_grad_() for t in (x, grid, guide)]
    y = fn(*leaves)
    return (y.detach(), *torch.autograd.grad(y, leaves, grad_y))


def assert_matches_reference(fn, x, grid, guide):
    """fn's value and gradients equal the reference's, the gradients relative to their largest magnitude (the
    grid's sums many pixels)."""
    grad_y = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(x)
    got = value_and_grads(fn, x, grid, guide, grad_y)
    expected = value_and_grads(reference.bilateral_transform, x, grid, guide, grad_y)
    for name, g, e in zip(("y", "grad x", "grad grid", "grad guide"), got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype, name
        scale = max(1.0, float(e.abs().max()))
        torch.testing.assert_close(g.cpu(), e.cpu(), rtol=0, atol=ATOL[x.dtype] * scale, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,gs", CASES)
@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_bilateral_transform_parity(native, dtype, shape, gs, guide):
    assert_matches_reference(native.bilateral_transform, *inputs(shape, gs, guide, dtype))


def test_bilateral_transform_noncontiguous_inputs(native):
    """Any layout in (channels_last, crops, strided views; a non-contiguous grid and incoming gradient):
    contiguous results, the reference's values."""
    x, grid, guide = inputs((2, 3, 23, 31), (8, 4, 6), "inside", torch.float32)
    wide_grid = torch.zeros(2, 12, 8, 4, 12)
    wide_grid[..., ::2] = grid
    for name, view in photo_views(x):
        y = native.bilateral_transform(view, wide_grid[..., ::2], guide)
        assert y.is_contiguous(), name
        assert_matches_reference(native.bilateral_transform, view, wide_grid[..., ::2], guide)
    leaves = [t.clone().requires_grad_() for t in (x, grid, guide)]
    y = native.bilateral_transform(*leaves)
    y.backward(torch.ones(2, 3, 31, 23).transpose(2, 3))  # a non-contiguous incoming gradient
    expected = [t.clone().requires_grad_() for t in (x, grid, guide)]
    reference.bilateral_transform(*expected).sum().backward()
    for got, ref in zip(leaves, expected):
        torch.testing.assert_close(got.grad, ref.grad, rtol=0, atol=2e-5 * max(1.0, float(ref.grad.abs().max())))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape,gs", [((1, 3, 5, 7), (3, 2, 3)), ((2, 3, 4, 5), (2, 3, 2)), ((1, 3, 3, 4), (1, 1, 1))])
def test_bilateral_transform_gradcheck(native, device, shape, gs):
    """float64 gradcheck of the kernels (guidance inside (0, 1) and its depth coordinate inside the grid, away
    from the clamps' kinks)."""
    x = (0.1 + 0.8 * rand_photo(shape, torch.float64, device)).requires_grad_()
    grid = rand_grid(shape[0], *gs, device=device).double().requires_grad_()
    w = torch.tensor([0.3, 0.4, 0.2, 0.05], dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(native.bilateral_transform, (x, grid, w))


def test_bilateral_transform_clamped_guidance_passes_no_depth_gradient(native):
    """Guidance below 0 or above 1 (clamped) or a depth coordinate on the grid's border: the guide's weights get
    no gradient from those pixels, as through the reference's clamps."""
    x = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64)
    grid = rand_grid(1, 4, 2, 2).double()
    for bias in (-2.0, 2.0, 0.125 - 0.75):  # g < 0, g > 1, g D - 1/2 = 0 exactly (the first cell's centre)
        w = torch.tensor([0.5, 0.5, 0.5, bias], dtype=torch.float64, requires_grad=True)
        native.bilateral_transform(x, grid, w).sum().backward()
        w_ref = w.detach().clone().requires_grad_()
        reference.bilateral_transform(x, grid, w_ref).sum().backward()
        assert torch.equal(w.grad, torch.zeros(4, dtype=torch.float64)) and torch.equal(w_ref.grad, w.grad)


def test_bilateral_transform_nan_pixels_stay_local(native):
    """A NaN or infinite pixel gives NaN where the reference does, reads no memory outside the grid (odd grid
    sizes), and leaves the other pixels' values and x-gradients alone."""
    x, grid, guide = inputs((1, 3, 17, 23), (7, 5, 7), "inside", torch.float64)
    x[0, :, 4, 6] = float("nan")
    x[0, 1, 9, 2] = float("inf")
    leaves = [t.clone().requires_grad_() for t in (x, grid, guide)]
    y = native.bilateral_transform(*leaves)
    y_ref = reference.bilateral_transform(x, grid, guide)
    assert torch.equal(y.isnan(), y_ref.isnan())
    finite = y_ref.isfinite()
    torch.testing.assert_close(y.detach()[finite], y_ref[finite], rtol=0, atol=1e-12)
    gx, = torch.autograd.grad(y, leaves[0], torch.ones_like(y), allow_unused=False)
    others = torch.ones(17, 23, dtype=torch.bool)
    others[4, 6] = others[9, 2] = False
    assert gx[0][:, others].isfinite().all()


def test_bilateral_transform_empty_batch(native):
    x, grid, guide = torch.zeros(0, 3, 5, 4), torch.zeros(0, 12, 2, 2, 2), torch.tensor(GUIDES["inside"])
    assert native.bilateral_transform(x, grid, guide).shape == x.shape
    gx, gg, gw = native.bilateral_transform_backward(torch.zeros_like(x), x, grid, guide)
    assert gx.shape == x.shape and gg.shape == grid.shape and torch.equal(gw, torch.zeros(4))


@pytest.mark.parametrize("device", DEVICES)
def test_bilateral_transform_opcheck_and_compile(native, device):
    x, grid, guide = inputs((2, 3, 9, 7), (4, 3, 2), "outside", torch.float32, device)
    torch.library.opcheck(native.bilateral_transform_backward, (torch.randn_like(x), x, grid, guide))
    args = [t.clone().requires_grad_() for t in (x, grid, guide)]
    torch.library.opcheck(native.bilateral_transform, args)

    def loss(x, grid, guide):
        return (ops.bilateral_transform(x, grid, guide) - 0.5).square().mean()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(*args), args)
    expected = torch.autograd.grad(loss(*args), args)
    for g, e in zip(got, expected):
        assert torch.equal(g, e)


def test_ops_bilateral_transform_dispatch(native):
    """ops.bilateral_transform: the kernels for float32 / float64 (a float64 grid cast to a float32 image's dtype
    as the reference casts it), the reference for half floats."""
    x, grid, guide = inputs((1, 3, 9, 14), (4, 3, 3), "inside", torch.float32)
    assert torch.equal(ops.bilateral_transform(x, grid.double(), guide.double()),
                       native.bilateral_transform(x, grid, guide))
    half = x.to(torch.bfloat16)
    torch.testing.assert_close(ops.bilateral_transform(half, grid, guide),
                               reference.bilateral_transform(half, grid, guide), rtol=0, atol=0)


def test_bilateral_grid_trains_through_the_kernels(native):
    """The model's training forward (clamp=False) runs the native op, and its parameters get the gradients the
    reference path gives them."""
    torch.manual_seed(0)
    model = BilateralGrid(depth=4, width=4)
    x = rand_photo((2, 3, 40, 56), torch.float32)
    e = torch.tensor([0.4, 0.6])
    raw = model(x, e, clamp=False)
    with torch.no_grad():
        assert torch.equal(raw, native.bilateral_transform(x, model.grid(model.thumbnail(x), e), model.guide))
    got = torch.autograd.grad(raw.square().mean(), list(model.parameters()))
    ops.set_backend("reference")
    try:
        expected = torch.autograd.grad(model(x, e, clamp=False).square().mean(), list(model.parameters()))
    finally:
        ops.set_backend("native")
    for g, r in zip(got, expected):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-6)


# Bad input for the ops themselves, built from good ones, and the words the error must contain: the kernel
# (RuntimeError from TORCH_CHECK) and its fake (torch._check) refuse each one alike.
BAD = [
    (lambda x, g, w: (x[0], g, w), "x must be 4-D"),
    (lambda x, g, w: (x.half(), g.half(), w.half()), "x must be float32 or float64"),
    (lambda x, g, w: (x[:, :2], g, w), "3 \\(RGB\\) channels"),
    (lambda x, g, w: (x[:, :, :0], g, w), "x has an empty dimension"),
    (lambda x, g, w: (x, g[:, :, 0], w), "grid must be 5-D"),
    (lambda x, g, w: (x, g.double(), w), "grid is torch.float64 but x is torch.float32|grid is Double but x is Float"),
    (lambda x, g, w: (x, torch.cat([g, g]), w), "grid batch"),
    (lambda x, g, w: (x, g[:, :11], w), "12 coefficients"),
    (lambda x, g, w: (x, g[:, :, :0], w), "grid has an empty dimension"),
    (lambda x, g, w: (x, g, w[:3]), "guide must be \\(4,\\)"),
]


@pytest.mark.parametrize("make,match", BAD)
def test_bilateral_transform_kernel_and_fake_refuse_alike(native, make, match):
    args = make(*inputs((1, 3, 8, 8), (2, 2, 2), "inside", torch.float32))
    backward_args = (torch.zeros(args[0].shape, dtype=args[0].dtype), *args)
    for op, a in ((native.bilateral_transform, args), (native.bilateral_transform_backward, backward_args)):
        with pytest.raises(RuntimeError, match=match):
            op(*a)
        with FakeTensorMode() as mode:
            fake = [mode.from_tensor(t) for t in a]
            with pytest.raises(RuntimeError, match=match):
                op(*fake)


def test_bilateral_transform_backward_refuses_a_mismatched_gradient(native):
    x, grid, guide = inputs((1, 3, 8, 8), (2, 2, 2), "inside", torch.float32)
    for grad_y, match in ((torch.zeros(1, 3, 8, 7), "grad_y shape"), (torch.zeros(1, 3, 8, 8).double(), "grad_y is")):
        with pytest.raises(RuntimeError, match=match):
            native.bilateral_transform_backward(grad_y, x, grid, guide)


@pytest.mark.parametrize("make,exc,match", [
    (lambda x, g, w: (x[0], g, w), ValueError, "x must be 4-D"),
    (lambda x, g, w: (x.to(torch.uint8), g, w), TypeError, "x must be a floating-point tensor"),
    (lambda x, g, w: (x[:, :1], g, w), ValueError, "3 \\(RGB\\) channels"),
    (lambda x, g, w: (x, g.to(torch.int32), w), TypeError, "grid must be floating point"),
    (lambda x, g, w: (x, g[:, :11], w), ValueError, "grid must be \\(B, 12"),
    (lambda x, g, w: (x, g, w[:3]), ValueError, "guide must be \\(4,\\)"),
    (lambda x, g, w: (x, g.to("meta"), w), ValueError, "grid is on meta but x is on cpu"),
])
def test_ops_bilateral_transform_bad_input(native, make, exc, match):
    with pytest.raises(exc, match=match):
        ops.bilateral_transform(*make(*inputs((1, 3, 8, 8), (2, 2, 2), "inside", torch.float32)))


@pytest.mark.skipif(not CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,gs", CASES)
def test_bilateral_transform_cuda_parity(native, dtype, shape, gs):
    assert ops.cuda_built(), "lowlight_core._C was built without CUDA (build with FORCE_CUDA=1)"
    assert_matches_reference(native.bilateral_transform, *inputs(shape, gs, "outside", dtype, "cuda"))
