"""Native fused ops against the pure-PyTorch reference: gradcheck, parity, opcheck, compile, bad input."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DEVICES
from lowlight_core import ops, reference

torch.manual_seed(0)


def rand_image(*shape, device="cpu", dtype=torch.float32, lo=0.0, hi=1.0):
    return (torch.rand(*shape, dtype=torch.float64) * (hi - lo) + lo).to(device=device, dtype=dtype)


def rand_alpha(B, C, k, h, w, **kw):
    return rand_image(B, C * k, h, w, lo=-1.0, hi=1.0, **kw)


# (x shape, alpha (k, h, w), iterations): per-step full-res, shared, resized, fewer maps than steps, more maps
LE_CASES = [
    ((2, 3, 7, 5), (4, 7, 5), 4),
    ((2, 3, 7, 5), (1, 7, 5), 5),
    ((2, 3, 7, 5), (1, 3, 4), 3),
    ((1, 3, 6, 9), (2, 2, 3), 4),
    ((2, 1, 5, 8), (6, 9, 11), 3),  # alpha larger than x: downsampling bilinear
    ((1, 2, 1, 1), (1, 1, 1), 2),
]


def le_inputs(xs, ak, n, dtype=torch.float64, device="cpu"):
    B, C = xs[:2]
    x = rand_image(*xs, dtype=dtype, device=device).requires_grad_()
    a = rand_alpha(B, C, *ak, dtype=dtype, device=device).requires_grad_()
    return x, a, n


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("xs,ak,n", LE_CASES)
def test_le_curve_gradcheck(native, device, xs, ak, n):
    x, a, n = le_inputs(xs, ak, n, device=device)
    assert torch.autograd.gradcheck(lambda x, a: native.le_curve(x, a, n), (x, a))
    y = native.le_curve(x, a, n)
    torch.testing.assert_close(y, reference.le_curve(x, a, n), rtol=1e-12, atol=1e-12)


BLUR_CASES = [((2, 3, 7, 5), 1.2, 5), ((1, 2, 4, 3), 3.0, 9), ((1, 1, 1, 6), 0.7, 3), ((1, 3, 5, 5), 2.0, 1)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape,sigma,ksize", BLUR_CASES)
def test_blur_color_loss_gradcheck(native, device, shape, sigma, ksize):
    x = rand_image(*shape, dtype=torch.float64, device=device).requires_grad_()
    y = rand_image(*shape, dtype=torch.float64, device=device).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: native.blur_color_loss(x, y, sigma, ksize), (x, y))
    torch.testing.assert_close(native.blur_color_loss(x, y, sigma, ksize),
                               reference.blur_color_loss(x, y, sigma, ksize), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", reference.TV_KINDS)
@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 2, 1, 6), (1, 1, 5, 1), (2, 24, 4, 3)])
def test_tv_loss_gradcheck(native, device, kind, shape):
    t = rand_image(*shape, dtype=torch.float64, device=device, lo=-1, hi=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: native.tv_loss(t, kind), (t,))
    torch.testing.assert_close(native.tv_loss(t, kind), reference.tv_loss(t, kind), rtol=1e-12, atol=1e-14)


def test_empty_batch(native):
    x, a = torch.rand(0, 3, 8, 8), torch.rand(0, 3, 2, 2)
    assert native.le_curve(x, a, 4).shape == x.shape
    gx, ga = native.le_curve_backward(x, x, a, 4)
    assert gx.shape == x.shape and ga.shape == a.shape
    for kind in reference.TV_KINDS:
        torch.testing.assert_close(native.tv_loss(x, kind), reference.tv_loss(x, kind), equal_nan=True)
    torch.testing.assert_close(native.blur_color_loss(x, x, 3.0, 21), reference.blur_color_loss(x, x, 3.0, 21),
                               equal_nan=True)


def test_le_curve_backward_cpu_is_deterministic(native):
    """The CPU backward needs no deterministic mode (a low-res alpha's gradient is summed per row group, the
    groups added in a fixed order): it runs under torch.use_deterministic_algorithms(True) and gives the
    same bits with any thread count."""
    x, a, n = le_inputs((2, 3, 300, 170), (8, 13, 9), 8, dtype=torch.float32)
    gy = rand_image(2, 3, 300, 170, lo=-1, hi=1)
    threads, before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    results = []
    try:
        torch.use_deterministic_algorithms(True)
        for t in (1, 3, threads):
            torch.set_num_threads(t)
            results.append(native.le_curve_backward(gy, x.detach(), a.detach(), n))
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(before)
    for gx, ga in results[1:]:
        assert torch.equal(gx, results[0][0]) and torch.equal(ga, results[0][1])


# ---------------------------------------------------------------- float32 parity on realistic shapes

def layouts(t):
    """The same values as contiguous, channels_last and a non-contiguous view."""
    yield "contiguous", t
    yield "channels_last", t.contiguous(memory_format=torch.channels_last)
    big = torch.empty(t.shape[0], t.shape[1], t.shape[3], 2 * t.shape[2], dtype=t.dtype, device=t.device)
    view = big.transpose(2, 3)[:, :, ::2, :]
    view.copy_(t)
    assert not view.is_contiguous()
    yield "strided", view


def check_parity(fn_native, fn_ref, inputs, rtol, atol, grad_rtol, grad_atol):
    ins_n = [t.detach().clone().requires_grad_() for t in inputs]
    ins_r = [t.detach().clone().requires_grad_() for t in inputs]
    out_n, out_r = fn_native(*ins_n), fn_ref(*ins_r)
    torch.testing.assert_close(out_n, out_r, rtol=rtol, atol=atol)
    g = torch.randn_like(out_r)
    out_n.backward(g)
    out_r.backward(g)
    for a, b in zip(ins_n, ins_r):
        torch.testing.assert_close(a.grad, b.grad, rtol=grad_rtol, atol=grad_atol)


# (x shape, (k, h, w), iterations)
LE_PARITY = [
    ((1, 3, 256, 256), (8, 256, 256), 8),
    ((1, 3, 400, 600), (1, 34, 50), 8),
    ((3, 3, 37, 53), (8, 37, 53), 8),
    ((3, 3, 37, 53), (1, 4, 5), 16),
    ((2, 3, 257, 131), (1, 22, 11), 8),
    ((1, 1, 33, 17), (3, 33, 17), 6),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("xs,ak,n", LE_PARITY)
def test_le_curve_parity_float32(native, device, xs, ak, n):
    B, C = xs[:2]
    x = rand_image(*xs, device=device)
    a = rand_alpha(B, C, *ak, device=device)
    # gradient of a low-res alpha sums over ~(H/h)(W/w) pixels: looser absolute tolerance
    ga_atol = 1e-5 * max(1, xs[2] * xs[3] // (ak[1] * ak[2]))
    for name, xv in layouts(x):
        check_parity(lambda x, a: native.le_curve(x, a, n), lambda x, a: reference.le_curve(x, a, n),
                     [xv, a], 1e-5, 1e-5, 1e-4, ga_atol)
    for name, av in layouts(a):
        check_parity(lambda x, a: native.le_curve(x, a, n), lambda x, a: reference.le_curve(x, a, n),
                     [x, av], 1e-5, 1e-5, 1e-4, ga_atol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape,sigma,ksize", [((8, 3, 256, 256), 3.0, 21), ((1, 3, 400, 600), 3.0, 21),
                                               ((3, 3, 37, 53), 1.5, 7), ((2, 3, 15, 11), 4.0, 31)])
def test_blur_color_loss_parity_float32(native, device, shape, sigma, ksize):
    x, y = rand_image(*shape, device=device), rand_image(*shape, device=device)
    for name, xv in layouts(x):
        check_parity(lambda x, y: native.blur_color_loss(x, y, sigma, ksize),
                     lambda x, y: reference.blur_color_loss(x, y, sigma, ksize),
                     [xv, y], 1e-4, 1e-7, 1e-4, 1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", reference.TV_KINDS)
@pytest.mark.parametrize("shape", [(8, 24, 64, 64), (1, 3, 400, 600), (3, 3, 37, 53)])
def test_tv_loss_parity_float32(native, device, kind, shape):
    t = rand_image(*shape, device=device, lo=-1, hi=1)
    for name, tv in layouts(t):
        check_parity(lambda t: native.tv_loss(t, kind), lambda t: reference.tv_loss(t, kind),
                     [tv], 1e-4, 1e-6, 1e-4, 1e-9)


# ---------------------------------------------------------------- property tests

@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 3), C=st.integers(1, 4), H=st.integers(1, 24), W=st.integers(1, 24),
       k=st.integers(1, 9), h=st.integers(1, 24), w=st.integers(1, 24), n=st.integers(1, 12))
def test_le_curve_property(native, B, C, H, W, k, h, w, n):
    x = rand_image(B, C, H, W, dtype=torch.float64)
    a = rand_alpha(B, C, k, h, w, dtype=torch.float64)
    check_parity(lambda x, a: native.le_curve(x, a, n), lambda x, a: reference.le_curve(x, a, n),
                 [x, a], 1e-10, 1e-10, 1e-9, 1e-10)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 30), W=st.integers(1, 30),
       sigma=st.floats(0.3, 6.0), r=st.integers(0, 12))
def test_blur_color_loss_property(native, B, C, H, W, sigma, r):
    x, y = rand_image(B, C, H, W, dtype=torch.float64), rand_image(B, C, H, W, dtype=torch.float64)
    check_parity(lambda x, y: native.blur_color_loss(x, y, sigma, 2 * r + 1),
                 lambda x, y: reference.blur_color_loss(x, y, sigma, 2 * r + 1),
                 [x, y], 1e-10, 1e-14, 1e-9, 1e-14)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 3), C=st.integers(1, 5), H=st.integers(1, 20), W=st.integers(1, 20),
       kind=st.sampled_from(reference.TV_KINDS))
def test_tv_loss_property(native, B, C, H, W, kind):
    t = rand_image(B, C, H, W, dtype=torch.float64, lo=-1, hi=1)
    check_parity(lambda t: native.tv_loss(t, kind), lambda t: reference.tv_loss(t, kind),
                 [t], 1e-10, 1e-14, 1e-9, 1e-14)


# ---------------------------------------------------------------- opcheck and torch.compile

@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(native, device):
    x, a, _ = le_inputs((2, 3, 9, 7), (1, 3, 4), 0, dtype=torch.float32, device=device)
    torch.library.opcheck(native.le_curve, (x, a, 8))
    x, a, _ = le_inputs((2, 3, 9, 7), (8, 9, 7), 0, dtype=torch.float32, device=device)
    torch.library.opcheck(native.le_curve, (x, a, 8))
    y = rand_image(2, 3, 9, 7, device=device).requires_grad_()
    torch.library.opcheck(native.blur_color_loss, (x, y, 3.0, 21))
    for kind in reference.TV_KINDS:
        torch.library.opcheck(native.tv_loss, (a, kind))


def test_torch_compile_fullgraph(native):
    def loss_fn(x, a, target):
        y = ops.le_curve(x, a, 8)
        return ops.blur_color_loss(y, target) + 0.1 * ops.tv_loss(a, "zero_dce") + ops.tv_loss(y, "iso")

    x, a, _ = le_inputs((2, 3, 20, 17), (1, 5, 4), 0, dtype=torch.float32)
    target = rand_image(2, 3, 20, 17)
    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    expected = loss_fn(x, a, target)
    ga_expected, = torch.autograd.grad(expected, a)
    got = compiled(x, a, target)
    ga, = torch.autograd.grad(got, a)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(ga, ga_expected)


def test_backend_switch(native):
    x, a, _ = le_inputs((1, 3, 8, 8), (1, 2, 2), 0, dtype=torch.float32)
    assert ops.backend() == "native"
    try:
        ops.set_backend("reference")
        ref = ops.le_curve(x, a, 8)
    finally:
        ops.set_backend("native")
    torch.testing.assert_close(ops.le_curve(x, a, 8), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="backend"):
        ops.set_backend("fast")


# ---------------------------------------------------------------- bad input: clear errors naming the argument

def good():
    x = rand_image(1, 3, 8, 8)
    return x, rand_alpha(1, 3, 1, 8, 8)


@pytest.mark.parametrize("make,exc,match", [
    (lambda x, a: ops.le_curve(x[0], a, 8), ValueError, "x must be 4-D"),
    (lambda x, a: ops.le_curve(x, a[:, :2], 8), ValueError, "C\\*k channels"),
    (lambda x, a: ops.le_curve(x, a, 0), ValueError, "iterations"),
    (lambda x, a: ops.le_curve(x, a, 65), ValueError, "iterations"),
    (lambda x, a: ops.le_curve(x, a, 2.5), TypeError, "iterations"),
    (lambda x, a: ops.le_curve((x * 255).to(torch.uint8), a, 8), TypeError, "floating-point"),
    (lambda x, a: ops.le_curve(x, a.double(), 8), TypeError, "alpha"),
    (lambda x, a: ops.le_curve(x, a.expand(2, -1, -1, -1), 8), ValueError, "batch"),
    (lambda x, a: ops.le_curve(x, a[:, :, :0], 8), ValueError, "empty"),
    (lambda x, a: ops.le_curve(x, a.to("meta"), 8), ValueError, "alpha is on meta"),
    (lambda x, a: ops.blur_color_loss(x, a, 3.0, 20), ValueError, "ksize must be odd"),
    (lambda x, a: ops.blur_color_loss(x, a, 3.0, 0), ValueError, "ksize"),
    (lambda x, a: ops.blur_color_loss(x, a, 0.0, 21), ValueError, "sigma"),
    (lambda x, a: ops.blur_color_loss(x, a, float("nan"), 21), ValueError, "sigma"),
    (lambda x, a: ops.blur_color_loss(x, a[:, :, :4], 3.0, 21), ValueError, "shape"),
    (lambda x, a: ops.tv_loss(x, "l2"), ValueError, "kind"),
    (lambda x, a: ops.tv_loss(x[0], "l1"), ValueError, "4-D"),
])
def test_bad_input(native, make, exc, match):
    x, a = good()
    with pytest.raises(exc, match=match):
        make(x, a)


@pytest.mark.parametrize("call", [
    lambda n: n.le_curve(torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 4), 8),
    lambda n: n.le_curve(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), 0),
    lambda n: n.le_curve(torch.rand(3, 4, 4), torch.rand(1, 3, 4, 4), 8),
    lambda n: n.blur_color_loss(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), 3.0, 4),
    lambda n: n.blur_color_loss(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5), 3.0, 5),
    lambda n: n.tv_loss(torch.rand(1, 3, 4, 4), "nope"),
    lambda n: n.tv_loss(torch.ones(1, 3, 4, 4, dtype=torch.int32), "l1"),
])
def test_native_checks_raise_not_crash(native, call):
    """The C++ ops check their own inputs too (for callers that bypass lowlight_core.ops)."""
    with pytest.raises(RuntimeError):
        call(native)


# ---------------------------------------------------------------- the fakes refuse what the kernels refuse

def _f(*shape, dtype=torch.float32):
    return torch.rand(*shape).to(dtype)


def _u8(*shape):
    return (torch.rand(*shape) * 255).to(torch.uint8)


X, A = (1, 3, 8, 8), (1, 3, 2, 2)
ONE = torch.ones(())
BAD_CALLS = [  # (op, arguments, a pattern both errors must contain)
    ("le_curve", lambda: (_f(3, 8, 8), _f(*A), 8), "x must be 4-D"),
    ("le_curve", lambda: (_f(*X, dtype=torch.int32), _f(*A, dtype=torch.int32), 8), "x .*(Int|int32)"),
    ("le_curve", lambda: (_f(*X, dtype=torch.float16), _f(*A, dtype=torch.float16), 8), r" x.* got .*(Half|float16)"),
    ("le_curve", lambda: (_f(*X), _f(*A, dtype=torch.float64), 8), "alpha is .* but x is"),
    ("le_curve", lambda: (_f(*X), _f(*A), 0), r"iterations must be in \[1, 64\]"),
    ("le_curve", lambda: (_f(*X), _f(*A), 65), r"iterations must be in \[1, 64\]"),
    ("le_curve", lambda: (_f(*X), _f(2, 3, 2, 2), 8), "alpha batch 2 != x batch 1"),
    ("le_curve", lambda: (_f(*X), _f(1, 2, 2, 2), 8), r"C\*k channels"),
    ("le_curve", lambda: (_f(*X), _f(1, 3, 0, 2), 8), "alpha has an empty dimension"),
    ("le_curve_backward", lambda: (_f(1, 3, 8, 7), _f(*X), _f(*A), 8), "grad_y shape"),
    ("le_curve_backward", lambda: (_f(*X, dtype=torch.float64), _f(*X), _f(*A), 8), "grad_y is"),
    ("blur_color_loss", lambda: (_f(*X), _f(*X), 3.0, 4), r"ksize must be odd in \[1, 1001\]"),
    ("blur_color_loss", lambda: (_f(*X), _f(*X), float("nan"), 5), "sigma must be a finite number"),
    ("blur_color_loss", lambda: (_f(*X), _f(1, 3, 8, 7), 3.0, 5), "y shape"),
    ("blur_color_loss", lambda: (_f(*X), _f(*X, dtype=torch.float64), 3.0, 5), "y is .* but x is"),
    ("blur_color_loss_backward", lambda: (torch.ones(2), _f(*X), _f(*X), 3.0, 5), "grad must"),
    ("tv_loss", lambda: (_f(*X), "nope"), r"tv_loss: kind must be one of \('zero_dce', 'l1', 'iso'\), got 'nope'"),
    ("tv_loss", lambda: (_f(*X, dtype=torch.int32), "l1"), "t must be .*(Int|int32)"),
    ("tv_loss", lambda: (_f(1, 0, 8, 8), "l1"), "t has an empty dimension"),
    ("tv_loss_backward", lambda: (ONE, _f(*X), "nope"), "tv_loss_backward: kind must be one of"),
    ("tv_loss_backward", lambda: (torch.ones(2), _f(*X), "iso"), "grad must"),
    ("photo_curve", lambda: (_f(*X, dtype=torch.int32), _f(*A), 8), "image must be .*(Int|int32)"),
    ("photo_curve", lambda: (_u8(*X), _f(*A, dtype=torch.float64), 8), "alpha must be float32"),
    ("photo_curve", lambda: (_u8(*X), _f(1, 4, 2, 2), 8), r"alpha must have 3\*k channels"),
    ("photo_curve", lambda: (_u8(1, 5, 8, 8), _f(*A), 8), "image must have 1-4 channels"),
    ("photo_curve", lambda: (_u8(*X), _f(*A), 65), r"iterations must be in \[1, 64\]"),
    ("photo_value_curve", lambda: (_u8(*X), _f(2, 1, 2, 2), 8), "alpha batch 2 != image batch 1"),
    ("area_reduce", lambda: (_u8(*X), 0, 4), "the output size must be positive"),
    ("area_reduce", lambda: (_u8(3, 8, 8), 2, 2), "image must be 4-D"),
    ("area_reduce", lambda: (_f(*X, dtype=torch.int32), 2, 2), "image must be .*(Int|int32)"),
    ("guided_denoise", lambda: (_f(1, 2, 8, 8), _f(1, 2, 8, 8), 0.0, 1e-4, 1.0, 0.5, 2, 2), r"1 \(gray\) or 3"),
    ("guided_denoise", lambda: (_f(*X), _f(*X), 0.0, 1e-4, 1.0, 1.5, 2, 2), r"chroma must be in \[0, 1\]"),
    ("guided_denoise", lambda: (_f(*X), _f(1, 3, 8, 7), 0.0, 1e-4, 1.0, 0.5, 2, 2), "guide shape"),
]


@pytest.mark.parametrize("op,make,match", BAD_CALLS)
def test_fake_refuses_what_the_kernel_refuses(native, op, make, match):
    """torch.compile and FakeTensorMode run the fake kernel: it must reject the input the CPU kernel rejects."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    fn, args = getattr(native, op), make()
    with pytest.raises(RuntimeError, match=match):
        fn(*args)
    with FakeTensorMode() as mode:
        fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        with pytest.raises(RuntimeError, match=match):
            fn(*fake_args)


def test_opcheck_photo_ops(native):
    """The fakes of the photo ops accept what the kernels accept (uint8 channels_last, gray, float)."""
    photo = _u8(1, 480, 640, 3).permute(0, 3, 1, 2)  # an H x W x C photo, as it lies
    for image in (photo, _u8(2, 1, 9, 7), _f(1, 4, 6, 5, dtype=torch.float64)):
        alpha = _f(image.shape[0], 6, 3, 4)
        torch.library.opcheck(native.photo_curve, (image, alpha, 8))
        torch.library.opcheck(native.photo_value_curve, (image, alpha[:, :2], 8))
        torch.library.opcheck(native.area_reduce, (image, 5, 3))
