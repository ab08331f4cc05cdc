"""The denoise control: the guided_denoise op against its reference, the noise estimate, enhance(denoise=...)
(0 is bit-identical to no denoising), real dark SICE frames against their scene's bright frame, CLI and eval."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lowlight_core import controls, enhance, noise, ops, reference
from lowlight_core.metrics import flat_noise, psnr_uint8, ssim_uint8
from lowlight_core.plan import Engine

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LOWLIGHT_DATA", ROOT.parent / "shared" / "data"))
CLI = [sys.executable, "-m", "lowlight_core.cli"]


def op_inputs(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    guide = torch.rand(shape, generator=g, dtype=torch.float64) * 0.2
    x = (guide * 3 + 0.05 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x.to(dtype), guide.to(dtype)


# (shape, luma, chroma, luma radius, chroma radius): odd sizes, batch > 1, gray, radius beyond the image,
# a plane passed through (weight or share 0, radius 0), chroma estimated from an unfiltered luminance
CASES = [
    ((1, 3, 17, 23), 1.3, 1.0, 2, 6),
    ((2, 3, 9, 31), 0.4, 0.6, 1, 3),
    ((2, 1, 13, 7), 2.0, 0.0, 3, 0),
    ((1, 3, 5, 4), 1.0, 1.0, 9, 40),
    ((1, 3, 11, 12), 0.0, 0.8, 2, 2),
    ((1, 3, 11, 12), 1.5, 0.3, 0, 2),
    ((1, 3, 11, 12), 1.5, 0.0, 2, 2),
    ((1, 3, 1, 1), 1.0, 1.0, 2, 2),
]


@pytest.mark.parametrize("shape,luma,chroma,lr,cr", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_guided_denoise_matches_reference(native, shape, luma, chroma, lr, cr, dtype):
    x, guide = op_inputs(shape, dtype)
    args = (0.002, 1e-5, luma, chroma, lr, cr)
    got = native.guided_denoise(x, guide, *args)
    want = reference.guided_denoise(x, guide, *args)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    assert got.is_contiguous() and got.dtype == dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("shape,luma,chroma,lr,cr", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10), (torch.float16, 2e-3),
                                       (torch.bfloat16, 2e-2)])
def test_guided_denoise_cuda_matches_reference(native, shape, luma, chroma, lr, cr, dtype, tol):
    if not ops.cuda_built():
        pytest.fail("a CUDA device is present but lowlight_core._C was built without CUDA")
    x, guide = op_inputs(shape, torch.float64)
    args = (0.002, 1e-5, luma, chroma, lr, cr)
    got = native.guided_denoise(x.to("cuda", dtype), guide.to("cuda", dtype), *args)
    want = reference.guided_denoise(x.to(dtype).double(), guide.to(dtype).double(), *args)
    torch.testing.assert_close(got.double().cpu(), want, rtol=tol, atol=tol)


def test_guided_denoise_non_contiguous_inputs(native):
    x, guide = op_inputs((2, 3, 19, 26))
    args = (0.003, 2e-5, 1.0, 0.9, 2, 5)
    want = native.guided_denoise(x, guide, *args)
    cl = native.guided_denoise(x.to(memory_format=torch.channels_last), guide.to(memory_format=torch.channels_last),
                               *args)
    torch.testing.assert_close(cl, want, rtol=0, atol=0)
    wide_x, wide_g = op_inputs((2, 3, 19, 52))
    sx, sg = wide_x[..., ::2], wide_g[..., ::2]  # strided views
    torch.testing.assert_close(native.guided_denoise(sx, sg, *args), reference.guided_denoise(sx, sg, *args),
                               rtol=1e-5, atol=1e-5)


def test_reference_guided_filter_against_a_direct_formula():
    """The spec itself, checked on a gray image against He et al.'s formula written with pooling."""
    x, guide = op_inputs((1, 1, 12, 15), torch.float64)
    r, w, na, nb = 2, 3.0, 0.002, 1e-5

    def box(t):
        k = 2 * r + 1
        s = F.avg_pool2d(F.pad(t, (r,) * 4), k, 1, divisor_override=1)
        n = F.avg_pool2d(F.pad(torch.ones_like(t), (r,) * 4), k, 1, divisor_override=1)
        return s / n

    m, mi = box(x), box(guide)
    var = box(x * x) - m * m
    eps = w * (m / mi.clamp_min(1 / 255)) ** 2 * (na * mi + nb)
    a = var / (var + eps)
    want = (box(a) * x + box(m - a * m)).clamp(0, 1)
    torch.testing.assert_close(reference.guided_denoise(x, guide, na, nb, w, 0.0, r, 0), want)


def test_box_mean_matches_pooling_for_small_and_huge_radii():
    t = torch.rand(1, 1, 40, 50, dtype=torch.float64)
    for r in (1, 7, 60):
        k = 2 * r + 1
        s = F.avg_pool2d(F.pad(t, (r,) * 4), k, 1, divisor_override=1)
        n = F.avg_pool2d(F.pad(torch.ones_like(t), (r,) * 4), k, 1, divisor_override=1)
        torch.testing.assert_close(reference.box_mean(t, r), s / n)


def test_chroma_follows_the_luminance_edges():
    """Two flat halves, dark red-grey | bright green, with noise: the chroma noise goes and the colours do not
    bleed across the edge (a 13 x 13 box mean of the chroma would carry about half the difference over)."""
    g = torch.Generator().manual_seed(3)
    clean = torch.empty(1, 3, 40, 40, dtype=torch.float64)
    clean[..., :20] = torch.tensor([0.30, 0.20, 0.20], dtype=torch.float64).view(1, 3, 1, 1)
    clean[..., 20:] = torch.tensor([0.45, 0.60, 0.45], dtype=torch.float64).view(1, 3, 1, 1)
    y = clean + 0.03 * torch.randn(clean.shape, generator=g, dtype=torch.float64)  # enhanced, gain 3
    x = y / 3                                                                      # its input: noise var 1e-4
    out = reference.guided_denoise(y, x, 0.0, 1e-4, 1.0, 1.0, 2, 6)

    def chroma(t):
        return t - t.mean(1, keepdim=True)

    err_in, err_out = (chroma(t) - chroma(clean) for t in (y, out))
    inner = (slice(None), slice(None), slice(4, 36), list(range(2, 12)) + list(range(28, 38)))
    assert err_out[inner].std() < 0.5 * err_in[inner].std()                       # chroma noise more than halved
    step = (chroma(clean)[..., 20] - chroma(clean)[..., 19]).abs().mean()
    at_edge = err_out[:, :, 4:36, 18:22].mean(2).abs().mean()                     # 2 px either side of the edge
    assert at_edge < 0.15 * step, (float(at_edge), float(step))


def test_guided_denoise_opcheck_and_compile(native):
    x, guide = op_inputs((2, 3, 9, 11))
    args = (0.002, 1e-5, 1.0, 0.7, 2, 4)
    torch.library.opcheck(native.guided_denoise, (x, guide, *args))
    fn = torch.compile(lambda x, g: ops.guided_denoise(x, g, *args) * 2, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(fn(x, guide), native.guided_denoise(x, guide, *args) * 2)


@pytest.mark.parametrize("bad,match", [
    (lambda x, g: (x[:, :2], g[:, :2], 0.0, 0.0, 1.0, 1.0, 1, 1), "1 \\(gray\\) or 3"),
    (lambda x, g: (x, g[..., :-1], 0.0, 0.0, 1.0, 1.0, 1, 1), "guide shape"),
    (lambda x, g: (x, g.double(), 0.0, 0.0, 1.0, 1.0, 1, 1), "guide is"),
    (lambda x, g: (x, g, float("nan"), 0.0, 1.0, 1.0, 1, 1), "noise_a"),
    (lambda x, g: (x, g, 0.0, 0.0, -1.0, 1.0, 1, 1), "luma"),
    (lambda x, g: (x, g, 0.0, 0.0, 1.0, 1.5, 1, 1), "chroma must be a finite number in \\[0, 1\\]"),
    (lambda x, g: (x, g, 0.0, 0.0, 1.0, 1.0, -1, 1), "luma_radius"),
    (lambda x, g: (x[0], g[0], 0.0, 0.0, 1.0, 1.0, 1, 1), "4-D"),
    (lambda x, g: ((x * 255).byte(), (g * 255).byte(), 0.0, 0.0, 1.0, 1.0, 1, 1), "floating-point"),
])
def test_guided_denoise_bad_input_is_a_clear_error(bad, match):
    x, guide = op_inputs((1, 3, 6, 6))
    with pytest.raises((ValueError, TypeError), match=match):
        ops.guided_denoise(*bad(x, guide))


def test_native_kernel_checks_its_own_input(native):
    x, guide = op_inputs((1, 3, 6, 6))
    with pytest.raises(RuntimeError, match="guide shape"):
        native.guided_denoise(x, guide[..., :-1], 0.0, 0.0, 1.0, 1.0, 1, 1)


# ---------------------------------------------------------------- the noise estimate and the strength

@pytest.mark.parametrize("a,b", [(0.002, 1e-5), (0.0005, 4e-5), (0.0, 1e-4)])
def test_estimate_noise_recovers_a_poisson_gaussian_model(a, b):
    g = torch.Generator().manual_seed(1)
    ramp = torch.linspace(0.02, 0.3, 384, dtype=torch.float64)
    clean = (ramp.view(1, 1, 1, -1) + 0.05 * torch.sin(torch.arange(384) / 40.0).view(1, 1, -1, 1))
    clean = clean.expand(1, 3, 384, 384).clamp(0.01, 1)
    x = (clean + torch.randn(clean.shape, generator=g, dtype=torch.float64) * (a * clean + b).sqrt()).clamp(0, 1)
    m = noise.estimate_noise(x.float())
    for i in (0.05, 0.15, 0.25):  # the variance within 25 % over the image's range
        assert m.variance(i) == pytest.approx(a * i + b, rel=0.25), (m, i)


def test_estimate_noise_of_a_clean_image_is_small_and_auto_is_off():
    x = torch.linspace(0, 0.3, 256).view(1, 1, 1, -1).expand(1, 3, 256, 256).contiguous()
    m = noise.estimate_noise(x)
    assert m.std(0.15) < 1e-3
    assert noise.auto_strength(m, noise.Summary.of(x), noise.Summary.of(x * 2)) < 0.05


def test_denoise_strength_checks():
    noise.check_denoise(0)
    noise.check_denoise(1.0)
    noise.check_denoise("auto")
    for bad in (1.5, -0.1, float("nan"), "strong", True):
        with pytest.raises((ValueError, TypeError)):
            noise.check_denoise(bad)
    assert controls.parse_denoise("AUTO") == "auto" and controls.parse_denoise("0.3") == 0.3


# ---------------------------------------------------------------- enhance(denoise=...)

def dark_photo(seed=0, size=96):
    """A dark, noisy uint8 photo (a real skimage photo scaled down, Poisson-Gaussian noise)."""
    import skimage.data as skd
    from PIL import Image

    im = Image.fromarray(skd.astronaut())
    im.thumbnail((size, size))
    clean = np.asarray(im, dtype=np.float64) / 255 * 0.15
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(size=clean.shape) * np.sqrt(0.002 * clean + 2e-5)
    return (noisy.clip(0, 1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("model", ["gamma", "zero_dce_pp"])
def test_denoise_zero_is_bit_identical(model):
    """denoise 0 is off: bit-identical to a plan that never denoises (the default, auto, does denoise)."""
    x = dark_photo()
    plan = Engine(model, torch.device("cpu")).plan(x, exposure="auto")
    plan.run(8)
    plain = plan.result()
    assert not np.array_equal(enhance(x, model=model, device="cpu"), plain)
    for zero in (0, 0.0):
        assert np.array_equal(enhance(x, model=model, device="cpu", denoise=zero), plain)


@pytest.mark.parametrize("denoise", [1.0, "learned"])
@pytest.mark.parametrize("kind", ["rgb", "uint16", "gray", "rgba", "float", "tensor"])
def test_denoise_keeps_kind_and_lowers_noise(kind, denoise):
    x = dark_photo()
    if kind == "uint16":
        x = x.astype(np.uint16) * 257
    elif kind == "gray":
        x = x.mean(2).round().astype(np.uint8)
    elif kind == "rgba":
        x = np.dstack([x, np.full(x.shape[:2], 77, np.uint8)])
    elif kind == "float":
        x = x.astype(np.float32) / 255
    elif kind == "tensor":
        x = torch.from_numpy(x.astype(np.float32) / 255).permute(2, 0, 1)
    plain = enhance(x, model="zero_dce_pp", device="cpu", exposure=0.6, denoise=0)
    den = enhance(x, model="zero_dce_pp", device="cpu", exposure=0.6, denoise=denoise)
    assert type(den) is type(plain) and den.shape == plain.shape and den.dtype == plain.dtype
    a, b = (np.asarray(t.permute(1, 2, 0) if isinstance(t, torch.Tensor) else t, dtype=np.float64)
            for t in (plain, den))
    if kind == "rgba":
        assert np.array_equal(den[..., 3], x[..., 3])
        a, b = a[..., :3], b[..., :3]
    # local roughness (difference to the 3x3 mean) drops by more than half
    def rough(v):
        t = torch.from_numpy(v if v.ndim == 2 else v.mean(2))[None, None]
        return float((t - F.avg_pool2d(t, 3, 1, 1, count_include_pad=False)).abs().mean())
    assert rough(b) < 0.5 * rough(a)


def test_denoise_auto_and_bad_values():
    x = dark_photo()
    out = enhance(x, model="zero_dce_pp", device="cpu", denoise="auto")
    assert not np.array_equal(out, enhance(x, model="zero_dce_pp", device="cpu", denoise=0))
    assert np.array_equal(out, enhance(x, model="zero_dce_pp", device="cpu"))  # auto is the default
    learned = enhance(x, model="zero_dce_pp", device="cpu", denoise="learned")
    assert not np.array_equal(learned, out) and not np.array_equal(learned, enhance(x, model="zero_dce_pp",
                                                                                      device="cpu", denoise=0))
    for bad in (2, "lots", -0.5, "LEARNED"):
        with pytest.raises((ValueError, TypeError), match="denoise"):
            enhance(x, model="gamma", device="cpu", denoise=bad)


@pytest.mark.parametrize("model", ["gamma", "zero_dce_pp"])
def test_a_plans_denoise_with_a_kept_noise_model_is_what_enhance_adds(model):
    """The napari widget runs a plan, keeps the input's noise model and denoises again on a slider move."""
    x = dark_photo()
    plan = Engine(model, torch.device("cpu")).plan(x, exposure=0.6)
    plan.run(8)
    assert np.array_equal(plan.result(), enhance(x, model=model, device="cpu", exposure=0.6, denoise=0))
    plan.denoise(0.7, noise_model=plan.noise_model())  # gamma has no curve maps: calibrated on its output
    assert np.array_equal(plan.result(), enhance(x, model=model, device="cpu", exposure=0.6, denoise=0.7))


def test_calibrate_on_a_cleaner_output_lowers_the_noise_model():
    g = torch.Generator().manual_seed(2)
    clean = torch.linspace(0.03, 0.2, 256).view(1, 1, 1, -1).expand(1, 3, 256, 256)
    x = (clean + torch.randn(clean.shape, generator=g) * (0.002 * clean + 1e-5).sqrt()).clamp(0, 1)
    m = noise.estimate_noise(x)
    noisy_out = (x * 3).clamp(0, 1)  # brightened with its noise: the model stays about as it is
    s = noise.Summary.of
    assert noise.calibrate(m, s(x), s(noisy_out)).variance(0.1) == pytest.approx(m.variance(0.1), rel=0.3)
    clean_out = (clean * 3).clamp(0, 1)  # a network that removed the noise: nothing left to assume
    assert noise.calibrate(m, s(x), s(clean_out)).variance(0.1) < 0.01 * m.variance(0.1)


# ---------------------------------------------------------------- real dark SICE frames (held out)

def real_pairs(k):
    if not (DATA / "sice_part1").is_dir():
        pytest.skip(f"no SICE data in {DATA}")
    from training import data as data_mod
    from training.real_eval import darkest_frames, held_out, read_rgb

    return [(read_rgb(d), read_rgb(t)) for d, t in data_mod.spread(darkest_frames(held_out(DATA)[0]), k)]


def test_real_dark_frames_less_noise_same_or_better_fidelity():
    """zero_dce_pp at E = 0.6, denoise auto (guided filter) and learned vs off, on 8 held-out dark frames (the
    darkest of 8 scenes) with their scene's bright frame as the noise-free reference: flat-region noise at least
    halved, PSNR and SSIM against the bright frame not lower."""
    rows = []
    for x, ref in real_pairs(8):
        row = []
        for d in (0, "auto", "learned"):
            y = enhance(x, model="zero_dce_pp", device="cpu", exposure=0.6, denoise=d)
            row += [flat_noise(y), psnr_uint8(y, ref), ssim_uint8(y, ref)]
        rows.append(row)
    means = np.nanmean(np.array(rows), 0)
    n_off, p_off, s_off = means[:3]
    for n, p, s in (means[3:6], means[6:]):
        assert n < 0.5 * n_off, rows
        assert p >= p_off - 0.05 and s > s_off, rows


# ---------------------------------------------------------------- CLI and eval

def test_cli_enhance_and_eval_take_denoise(tmp_path):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(dark_photo()).save(src / "a.png")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for value, sub in (("0", "off"), ("auto", "auto")):
        r = subprocess.run(CLI + ["enhance", str(src), "-o", str(tmp_path / sub), "--model", "gamma", "--denoise",
                                  value, "--device", "cpu"], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
    off = np.asarray(Image.open(tmp_path / "off" / "a.png"))
    auto = np.asarray(Image.open(tmp_path / "auto" / "a.png"))
    assert np.array_equal(off, enhance(dark_photo(), model="gamma", device="cpu", denoise=0))
    assert np.array_equal(auto, enhance(dark_photo(), model="gamma", device="cpu", denoise="auto"))
    r = subprocess.run(CLI + ["enhance", str(src), "-o", str(tmp_path / "bad"), "--denoise", "3"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "denoise must be in" in r.stderr
    r = subprocess.run(CLI + ["enhance", str(src), "-o", str(tmp_path / "bad"), "--denoise", "much"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "denoise" in r.stderr
    report = tmp_path / "eval.json"
    r = subprocess.run(CLI + ["eval", "--low", str(src), "--model", "gamma", "--denoise", "0.8", "--device", "cpu",
                              "--json", str(report)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(report.read_text())
    assert data["settings"]["denoise"] == 0.8
    off = enhance(dark_photo(), model="gamma", device="cpu", denoise=0)
    assert data["mean"]["gamma"]["photo"]["noise"] < flat_noise(off)
