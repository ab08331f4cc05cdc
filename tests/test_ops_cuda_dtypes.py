"""CUDA kernels only: float16/bfloat16 against the float64 reference, every kernel path in float32/float64,
CUDA vs the CPU native kernels, empty batches, and indices past 2^31 (when the GPU has the memory).

Low-precision inputs are rounded to their dtype first and the reference runs in float64 on those exact
values, so the tolerances measure only the kernels' error: float32 math inside, one rounding on output.
"""
import pytest
import torch

from conftest import CUDA
from lowlight_core import ops, reference

pytestmark = pytest.mark.skipif(not CUDA, reason="no CUDA device")

LOW_PRECISION = [torch.float16, torch.bfloat16]
EPS = {torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}


@pytest.fixture(scope="module")
def cuda_ops(native):
    assert ops.cuda_built(), "lowlight_core._C was built without CUDA (build with FORCE_CUDA=1)"
    return native


def rand(*shape, lo=0.0, hi=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo


def to_cuda(t, dtype):
    """(t on CUDA in dtype, the same rounded values as float64 on the CPU for the reference)."""
    d = t.to(device="cuda", dtype=dtype)
    return d, d.cpu().double()


def assert_close_dtype(got, expected, dtype, ulps=4.0):
    """Within a few units of dtype's epsilon, relative to each value and to the largest one
    (values near zero and subnormal float16 gradients carry absolute error)."""
    eps = EPS[dtype]
    assert got.dtype == dtype and got.device.type == "cuda"
    torch.testing.assert_close(got.cpu().double(), expected, rtol=ulps * eps,
                               atol=ulps * eps * max(expected.abs().max().item(), 1e-30))


def reference_grads(fn, inputs, grad_out):
    ins = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*ins)
    out.backward(grad_out)
    return out.detach(), [t.grad for t in ins]


# ---------------------------------------------------------------- float16 / bfloat16 vs float64

# (x shape, alpha (k, h, w), iterations): per-step full-res, shared low-res, per-step low-res, alpha > x
LE_CASES = [((2, 3, 40, 56), (8, 40, 56), 8), ((2, 3, 96, 120), (1, 8, 10), 8),
            ((1, 3, 64, 80), (8, 6, 7), 8), ((1, 2, 20, 30), (2, 45, 70), 5)]


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("xs,ak,n", LE_CASES)
def test_le_curve_low_precision(cuda_ops, dtype, xs, ak, n):
    B, C, H, W = xs
    k, h, w = ak
    x, x64 = to_cuda(rand(*xs, seed=1), dtype)
    a, a64 = to_cuda(rand(B, C * k, h, w, lo=-1, hi=1, seed=2), dtype)
    gy, gy64 = to_cuda(rand(*xs, lo=-1, hi=1, seed=3), dtype)
    y_ref, (gx_ref, ga_ref) = reference_grads(lambda x, a: reference.le_curve(x, a, n), [x64, a64], gy64)
    assert_close_dtype(cuda_ops.le_curve(x, a, n), y_ref, dtype)
    assert_close_dtype(cuda_ops.le_curve(x.contiguous(memory_format=torch.channels_last), a, n), y_ref, dtype)
    gx, ga = cuda_ops.le_curve_backward(gy, x, a, n)
    assert_close_dtype(gx, gx_ref, dtype)
    assert_close_dtype(ga, ga_ref, dtype)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("shape,sigma,ksize", [((2, 3, 70, 90), 3.0, 21), ((1, 3, 50, 60), 9.0, 65)])
def test_blur_color_loss_low_precision(cuda_ops, dtype, shape, sigma, ksize):
    x, x64 = to_cuda(rand(*shape, seed=4), dtype)
    y, y64 = to_cuda(rand(*shape, seed=5), dtype)
    # Loss scaling by about N keeps the float16 gradient (about 2/N * blur) out of the subnormal range.
    grad, grad64 = to_cuda(torch.tensor(float(x.numel())), dtype)
    loss_ref, (gx_ref, _) = reference_grads(lambda x, y: reference.blur_color_loss(x, y, sigma, ksize), [x64, y64],
                                            grad64)
    assert_close_dtype(cuda_ops.blur_color_loss(x, y, sigma, ksize), loss_ref, dtype)
    assert_close_dtype(cuda_ops.blur_color_loss_backward(grad, x, y, sigma, ksize), gx_ref, dtype)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("kind", reference.TV_KINDS)
@pytest.mark.parametrize("shape", [(2, 3, 60, 70), (3, 24, 1, 9)])
def test_tv_loss_low_precision(cuda_ops, dtype, kind, shape):
    t, t64 = to_cuda(rand(*shape, lo=-1, hi=1, seed=6), dtype)
    grad, grad64 = to_cuda(torch.tensor(float(t.numel())), dtype)
    loss_ref, (gt_ref,) = reference_grads(lambda t: reference.tv_loss(t, kind), [t64], grad64)
    assert_close_dtype(cuda_ops.tv_loss(t, kind), loss_ref, dtype)
    assert_close_dtype(cuda_ops.tv_loss_backward(grad, t, kind), gt_ref, dtype)


# ---------------------------------------------------------------- every kernel path, float32 and float64

TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-11, atol=1e-13)}


def blur_by_matrices(d, sigma, ksize):
    """Separable 'same' zero-padded Gaussian blur as band matrices (float64): an independent reference that
    stays cheap for ksize up to 1001 (conv2d with a 1001 x 1001 kernel is not)."""
    g = reference.gaussian_kernel1d(sigma, ksize, torch.float64)
    r = ksize // 2

    def band(n):
        i = torch.arange(n)
        off = i[None, :] - i[:, None] + r  # m[i, i'] = g[i' - i + r]
        return torch.where((off >= 0) & (off < ksize), g[off.clamp(0, ksize - 1)], torch.zeros(()))

    return band(d.shape[-2]) @ d @ band(d.shape[-1]).T


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# float32 tiles fit shared memory up to ksize 63, float64 up to 31; larger ones take the two-pass path
@pytest.mark.parametrize("ksize", [1, 5, 21, 31, 33, 63, 65, 151, 1001])
def test_blur_color_loss_paths(cuda_ops, dtype, ksize):
    shape, sigma = (2, 2, 45, 70), max(ksize / 6.0, 0.5)
    x64, y64 = rand(*shape, seed=7), rand(*shape, seed=8)
    blurred = blur_by_matrices(x64 - y64, sigma, ksize)
    loss_ref = blurred.pow(2).mean()
    gx_ref = 2.0 / blurred.numel() * blur_by_matrices(blurred, sigma, ksize)
    if ksize <= 31:  # the matrix reference agrees with reference.py
        torch.testing.assert_close(loss_ref, reference.blur_color_loss(x64, y64, sigma, ksize), rtol=1e-12, atol=0)
    x, y = x64.to("cuda", dtype), y64.to("cuda", dtype)
    torch.testing.assert_close(cuda_ops.blur_color_loss(x, y, sigma, ksize).cpu().double(), loss_ref, **TOL[dtype])
    grad = torch.tensor(0.5, device="cuda", dtype=dtype)
    gx = cuda_ops.blur_color_loss_backward(grad, x, y, sigma, ksize)
    torch.testing.assert_close(gx.cpu().double(), 0.5 * gx_ref, rtol=TOL[dtype]["rtol"],
                               atol=TOL[dtype]["rtol"] * gx_ref.abs().max().item())


# (x shape, alpha (k, h, w), iterations), each reaching a different branch of the kernels
LE_PATHS = [
    ((2, 3, 33, 47), (12, 33, 47), 5),   # full-res, k > n: unused maps get zero gradient
    ((2, 3, 33, 47), (3, 33, 47), 7),    # full-res, k < n: the last map repeats
    ((1, 3, 70, 90), (16, 5, 4), 16),    # low-res, one map per step, tiles summed in shared memory
    ((1, 3, 70, 90), (5, 7, 9), 3),      # low-res, k > n
    ((1, 2, 13, 17), (1, 300, 400), 4),  # alpha much larger than x: footprints overflow shared memory
    ((1, 1, 50, 33), (2, 50, 5), 6),     # resized along one axis only
    ((3, 2, 1, 1), (1, 3, 2), 2),        # 1 x 1 image
]


def le_case(xs, ak, n, dtype, seed):
    """(x, alpha, grad_y) on CUDA in dtype and the float64 reference (y, grad_x, grad_alpha) of an LE case."""
    B, C = xs[:2]
    k, h, w = ak
    x64, a64 = rand(*xs, seed=seed), rand(B, C * k, h, w, lo=-1, hi=1, seed=seed + 1)
    gy64 = rand(*xs, lo=-1, hi=1, seed=seed + 2)
    y_ref, (gx_ref, ga_ref) = reference_grads(lambda x, a: reference.le_curve(x, a, n), [x64, a64], gy64)
    return [t.to("cuda", dtype) for t in (x64, a64, gy64)], (y_ref, gx_ref, ga_ref)


def assert_le_grads_close(gx, ga, gx_ref, ga_ref, dtype):
    torch.testing.assert_close(gx.cpu().double(), gx_ref, **TOL[dtype])
    scale = max(1.0, ga_ref.abs().max().item())  # a low-res gradient sums many pixels
    torch.testing.assert_close(ga.cpu().double(), ga_ref, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("xs,ak,n", LE_PATHS)
def test_le_curve_paths(cuda_ops, dtype, xs, ak, n):
    (x, a, gy), (y_ref, gx_ref, ga_ref) = le_case(xs, ak, n, dtype, seed=9)
    torch.testing.assert_close(cuda_ops.le_curve(x, a, n).cpu().double(), y_ref, **TOL[dtype])
    assert_le_grads_close(*cuda_ops.le_curve_backward(gy, x, a, n), gx_ref, ga_ref, dtype)


def test_empty_batch(cuda_ops):
    x, a = torch.rand(0, 3, 8, 8, device="cuda"), torch.rand(0, 3, 2, 2, device="cuda")
    assert cuda_ops.le_curve(x, a, 4).shape == x.shape
    gx, ga = cuda_ops.le_curve_backward(x, x, a, 4)
    assert gx.shape == x.shape and ga.shape == a.shape
    for kind in reference.TV_KINDS:
        torch.testing.assert_close(cuda_ops.tv_loss(x, kind).cpu(), reference.tv_loss(x.cpu(), kind), equal_nan=True)
        assert cuda_ops.tv_loss_backward(torch.ones((), device="cuda"), x, kind).shape == x.shape
    torch.testing.assert_close(cuda_ops.blur_color_loss(x, x, 3.0, 21).cpu(),
                               reference.blur_color_loss(x.cpu(), x.cpu(), 3.0, 21), equal_nan=True)


@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


# Every resized case of LE_PATHS, a 1 x 1 alpha (one alpha column gathers whole rows) and a photo-like ratio
DETERMINISTIC_CASES = [case for case in LE_PATHS if case[1][1:] != case[0][2:]] + [
    ((2, 3, 64, 96), (1, 1, 1), 8), ((1, 3, 200, 300), (1, 17, 25), 8)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("xs,ak,n", DETERMINISTIC_CASES)
def test_le_curve_backward_deterministic(cuda_ops, deterministic, dtype, xs, ak, n):
    """Under torch.use_deterministic_algorithms(True) the resized-alpha gradient is summed in a fixed order
    instead of with atomics: two backward passes are bitwise equal and match the reference."""
    (x, a, gy), (_, gx_ref, ga_ref) = le_case(xs, ak, n, dtype, seed=12)
    gx, ga = cuda_ops.le_curve_backward(gy, x, a, n)
    gx2, ga2 = cuda_ops.le_curve_backward(gy, x, a, n)
    assert torch.equal(gx, gx2) and torch.equal(ga, ga2)
    assert_le_grads_close(gx, ga, gx_ref, ga_ref, dtype)


@pytest.mark.parametrize("alpha_hw", [(4, 5), (16, 16)])
def test_deterministic_training_step_repeats(cuda_ops, deterministic, alpha_hw):
    """A deterministic CUDA training step through the public op (low-res and full-res alpha) runs and gives
    the same gradients bit for bit."""
    x = torch.rand(2, 3, 16, 16, device="cuda")
    alpha = torch.rand(2, 3, *alpha_hw, device="cuda")

    def grads():
        a = alpha.clone().requires_grad_()
        (ops.le_curve(x, a, 8) ** 2).mean().backward()
        return a.grad

    assert torch.equal(grads(), grads())


def test_bad_input_raises(cuda_ops):
    x = torch.rand(1, 3, 8, 8, device="cuda")
    with pytest.raises(RuntimeError, match="alpha"):
        cuda_ops.le_curve(x, torch.rand(1, 3, 8, 8), 4)  # alpha on the CPU
    with pytest.raises(RuntimeError, match="iterations"):
        cuda_ops.le_curve(x, x, 65)
    with pytest.raises(RuntimeError, match="ksize"):
        cuda_ops.blur_color_loss(x, x, 3.0, 1003)
    with pytest.raises(RuntimeError, match="kind"):
        cuda_ops.tv_loss(x, "l2")
    with pytest.raises(RuntimeError, match="float"):
        cuda_ops.tv_loss(x.to(torch.int32), "l1")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_runs_on_the_tensors_device(cuda_ops):
    x = torch.rand(1, 3, 16, 16, device="cuda:1")
    a = torch.rand(1, 3, 4, 4, device="cuda:1")
    with torch.cuda.device(0):
        y = cuda_ops.le_curve(x, a, 4)
    assert y.device == x.device
    torch.testing.assert_close(y.cpu(), reference.le_curve(x.cpu(), a.cpu(), 4), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- CUDA vs the CPU native kernels (float32)

def both_devices(fn, inputs, grad_out):
    """fn's output and input gradients on the CPU and on CUDA (native ops on both)."""
    results = []
    for device in ("cpu", "cuda"):
        ins = [t.to(device).requires_grad_() for t in inputs]
        out = fn(*ins)
        out.backward(grad_out.to(device))
        results.append([out.detach().cpu()] + [t.grad.cpu() for t in ins])
    return results


@pytest.mark.parametrize("xs,ak,n", [((1, 3, 400, 600), (1, 34, 50), 8), ((2, 3, 256, 256), (8, 256, 256), 8)])
def test_le_curve_cuda_matches_cpu(cuda_ops, xs, ak, n):
    B, C = xs[:2]
    x, a = rand(*xs, seed=12).float(), rand(B, C * ak[0], *ak[1:], lo=-1, hi=1, seed=13).float()
    cpu, cuda = both_devices(lambda x, a: ops.le_curve(x, a, n), [x, a], rand(*xs, lo=-1, hi=1, seed=14).float())
    torch.testing.assert_close(cuda[0], cpu[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cuda[1], cpu[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cuda[2], cpu[2], rtol=1e-4, atol=1e-4 * max(1.0, cpu[2].abs().max().item()))


@pytest.mark.parametrize("shape", [(8, 3, 256, 256), (1, 3, 400, 600)])
def test_losses_cuda_match_cpu(cuda_ops, shape):
    x, y = rand(*shape, seed=15).float(), rand(*shape, seed=16).float()
    one = torch.tensor(1.0)
    cpu, cuda = both_devices(lambda x, y: ops.blur_color_loss(x, y, 3.0, 21), [x, y], one)
    for got, expected in zip(cuda, cpu):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    for kind in reference.TV_KINDS:
        cpu, cuda = both_devices(lambda t: ops.tv_loss(t, kind), [x], one)
        for got, expected in zip(cuda, cpu):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


# ---------------------------------------------------------------- indices past 2^31 (64-bit indexing)

# 9 * 2^28 > 2^31 elements. Planes are small so that references on batch slices are cheap; the last slice
# lies entirely past 2^31. All losses are means over equal batch chunks: the loss is the mean of the chunk
# losses, and the gradient of a slice of S images is (S / B) times the gradient of that slice's own loss.
BIG = (36864, 1, 256, 256)
CHUNK = 4096
TAIL = slice(BIG[0] - 64, BIG[0])


def need_free_gib(gib):
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    if free < gib * 2 ** 30:
        pytest.skip(f"needs {gib} GiB of free GPU memory, {free / 2 ** 30:.1f} GiB free")


def big_tensor(seed, dtype, lo=0.0, hi=1.0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    t = torch.rand(BIG, generator=g, device="cuda", dtype=dtype)
    return t.mul_(hi - lo).add_(lo)


@pytest.fixture
def big_memory():
    """The float32 references use cuDNN convolutions: keep them in full float32. Free the memory after."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = old
    torch.cuda.empty_cache()


def test_le_curve_large_index(cuda_ops, big_memory):
    need_free_gib(24)
    x = big_tensor(0, torch.float16)
    alpha = (torch.rand(BIG[0], 1, 16, 16, device="cuda") * 2 - 1).half()
    y = cuda_ops.le_curve(x, alpha, 8)
    for part in (slice(0, 64), TAIL):
        expected = reference.le_curve(x[part].float(), alpha[part].float(), 8)
        torch.testing.assert_close(y[part].float(), expected, rtol=2e-3, atol=2e-3)
    del y
    gx, ga = cuda_ops.le_curve_backward(x, x, alpha, 8)  # grad_y = x: any values do
    xs, a_s = x[TAIL].float().requires_grad_(), alpha[TAIL].float().requires_grad_()
    reference.le_curve(xs, a_s, 8).backward(x[TAIL].float())
    torch.testing.assert_close(gx[TAIL].float(), xs.grad, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(ga[TAIL].float(), a_s.grad, rtol=4e-3, atol=4e-3 * a_s.grad.abs().max().item())


def chunked_mean(fn, *tensors):
    chunks = range(0, BIG[0], CHUNK)
    return sum(fn(*(t[c:c + CHUNK].float() for t in tensors)).double() for c in chunks) / len(chunks)


def check_tail_grad(got, fn, *tensors):
    """got: gradient of the full loss (upstream 1); compare its tail slice with the slice's own loss."""
    S = TAIL.stop - TAIL.start
    first = tensors[0][TAIL].float().requires_grad_()
    fn(first, *(t[TAIL].float() for t in tensors[1:])).backward(torch.tensor(S / BIG[0], device="cuda"))
    torch.testing.assert_close(got[TAIL], first.grad, rtol=1e-4, atol=1e-4 * first.grad.abs().max().item())


# float32 (about 10 GB a tensor): the gradients, about 1/N, would be float16 subnormals.
def test_losses_large_index(cuda_ops, big_memory):
    need_free_gib(50)
    x = big_tensor(1, torch.float32, -1.0, 1.0)
    one = torch.ones((), device="cuda")
    for kind in reference.TV_KINDS:
        fn = lambda t: reference.tv_loss(t, kind)  # noqa: E731
        torch.testing.assert_close(cuda_ops.tv_loss(x, kind).double(), chunked_mean(fn, x), rtol=1e-5, atol=0)
        check_tail_grad(cuda_ops.tv_loss_backward(one, x, kind), fn, x)
    y = big_tensor(2, torch.float32, -1.0, 1.0)
    fn = lambda x, y: reference.blur_color_loss(x, y, 3.0, 21)  # noqa: E731
    torch.testing.assert_close(cuda_ops.blur_color_loss(x, y, 3.0, 21).double(), chunked_mean(fn, x, y),
                               rtol=1e-5, atol=0)
    check_tail_grad(cuda_ops.blur_color_loss_backward(one, x, y, 3.0, 21), fn, x, y)
