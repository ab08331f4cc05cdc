"""ONNX export (lowlight_core.onnx_export, `lowlight onnx`): every exported file runs in ONNX Runtime (CPU) and
matches its model (float input) within 2/255 everywhere and 0.5/255 on average, odd sizes included.
Each model is exported once per session (about a minute each on the 2-core CPU)."""
import sys

import numpy as np
import pytest
import torch

import lowlight_core
from lowlight_core import cli
from lowlight_core.controls import EXPOSURE_RANGE, MAX_ITERATIONS
from lowlight_core import reference
from lowlight_core.models._common import fit_long_side
from lowlight_core.models import bilateral_grid, registry
from lowlight_core.models.registry import get_model_info
from lowlight_core.models.zero_dce_pp import THUMBNAIL_OVERSAMPLE, photo_thumbnail

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
onnx_export = pytest.importorskip("lowlight_core.onnx_export")

EXPORTED = ["zero_dce", "zero_dce_pp", "zero_dce_pp_paired", "dln", "iqe_dcgan", "enlightengan", "bilateral_grid"]
SHAPES = [(1, 3, 37, 53), (2, 3, 61, 19), (1, 3, 5, 7), (1, 3, 203, 151), (1, 3, 17, 1), (1, 3, 1, 1)]
MAX_ERR, MEAN_ERR = 2 / 255, 0.5 / 255


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """model name -> an ONNX Runtime session of its exported file (zero_dce_pp written by the CLI)."""
    folder, sessions = tmp_path_factory.mktemp("onnx"), {}

    def get(name):
        if name not in sessions:
            path = folder / f"{name}.onnx"
            if name == "zero_dce_pp":
                assert cli.main(["onnx", name, "-o", str(path)]) == 0
            else:
                assert onnx_export.export_onnx(name, path) == path
            onnx.checker.check_model(str(path), full_check=True)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()  # as many threads as torch (OMP_NUM_THREADS)
            sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return sessions[name]
    return get


def _dark(shape, seed=0):
    """A dark float image with structure (a gradient, noise and a bright patch), N x 3 x H x W."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    ramp = np.linspace(0.02, 0.25, w, dtype=np.float32)[None, None, None, :]
    x = np.clip(ramp * rng.uniform(0.6, 1.2, (n, c, 1, 1)) + rng.normal(0, 0.02, shape), 0, 1).astype(np.float32)
    x[:, :, h // 3: h // 2, w // 3: w // 2] = 0.8
    return x


def _run(session, x, exposure=None, iterations=None):
    feed = {"image": x}
    if exposure is not None:
        feed["exposure"] = np.array(exposure, np.float32)
    if iterations is not None:
        feed["iterations"] = np.array(iterations, np.int64)
    return session.run(["enhanced"], feed)[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTED)
def test_export_matches_the_model(exported, name):
    """The file is the model alone (docs/onnx.md): what the model computes for these controls, not enhance()'s
    exposure calibration, tone stage or denoise around it."""
    session = exported(name)
    model = registry.load_model(name, device="cpu")
    info = get_model_info(name)
    inputs = {i.name: i for i in session.get_inputs()}
    assert set(inputs) == {"image"} | set(info.controls)
    assert [o.name for o in session.get_outputs()] == ["enhanced"]
    dims = inputs["image"].shape
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))  # dynamic N, H, W
    controls = [(0.6, 8)] if not info.controls else [(0.6, 8), (0.4, 1), (0.85, 12)]
    for i, shape in enumerate(SHAPES):
        x = _dark(shape, seed=i)
        for exposure, iterations in controls:
            got = _run(session, x, *((exposure if "exposure" in info.controls else None),
                                     (iterations if "iterations" in info.controls else None)))
            # a photo-estimate model reads its thumbnail as the photo path does (the graph has that thumbnail)
            run = model.enhance_photo if model.contract.photo_estimate else model.enhance
            with torch.no_grad():
                want = run(torch.from_numpy(x), exposure=exposure, iterations=iterations).numpy()
            assert got.shape == x.shape and got.dtype == np.float32
            err = np.abs(got - want)
            assert err.max() <= MAX_ERR and err.mean() <= MEAN_ERR, (name, shape, exposure, iterations, err.max())
    assert np.abs(got - x).mean() > 0.02  # the model did something


@pytest.mark.slow
def test_out_of_range_controls_are_clamped(exported):
    session, x = exported("zero_dce_pp"), _dark((1, 3, 40, 30))
    lo, hi = EXPOSURE_RANGE
    assert np.array_equal(_run(session, x, 0.6, 0), _run(session, x, 0.6, 1))
    assert np.array_equal(_run(session, x, 0.6, 10 ** 6), _run(session, x, 0.6, MAX_ITERATIONS))
    assert np.array_equal(_run(session, x, 5.0, 8), _run(session, x, hi, 8))
    assert np.array_equal(_run(session, x, -1.0, 8), _run(session, x, lo, 8))
    assert not np.array_equal(_run(session, x, lo, 8), _run(session, x, hi, 8))


@pytest.mark.parametrize("name", ["gamma", "clahe"])
def test_models_without_an_onnx_form_are_refused_with_the_reason(tmp_path, name):
    with pytest.raises(ValueError, match=f"{name} cannot be exported to ONNX: .+enhance"):
        onnx_export.export_onnx(name, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_bad_requests_exit_2_with_a_message(tmp_path, capsys):
    assert cli.main(["onnx", "nope", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert cli.main(["onnx", "zero_dce_pp", "-o", str(tmp_path / "m.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert cli.main(["onnx", "clahe", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "clahe cannot be exported" in capsys.readouterr().err
    assert cli.main(["onnx", "zero_dce_pp", "-o", str(tmp_path / "missing" / "m.onnx")]) == 2
    assert "missing" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_missing_extra_names_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed: import raises ImportError
    with pytest.raises(ImportError, match=r"\[onnx\] extra .*onnxscript.*pip install 'napari-lowlight\[onnx\]'"):
        onnx_export.export_onnx("zero_dce_pp", tmp_path / "m.onnx")
    assert cli.main(["onnx", "zero_dce_pp", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "[onnx] extra" in capsys.readouterr().err


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (9, 4), (17, 1), (30, 2), (2, 30), (37, 53), (642, 3424),
                                  (1245, 3984), (480, 640)])
def test_thumbnail_matrices_equal_the_photo_thumbnail(size):
    """The in-graph thumbnail (two weight matrices) is the photo path's block means + antialiased resize: Zero-DCE++'s
    (long side 8, downsampling) and bilateral_grid's (256 x 256 whatever the size: upsampling too)."""
    h, w = size
    x = torch.rand(1, 3, h, w)
    assert onnx_export.fit_long_side(h, w, 8) == fit_long_side(h, w, 8)
    for thumb, oversample in ((fit_long_side(h, w, 8), THUMBNAIL_OVERSAMPLE),
                              ((bilateral_grid.THUMBNAIL,) * 2, bilateral_grid.THUMBNAIL_OVERSAMPLE)):
        want = photo_thumbnail(x, thumb, oversample)
        got = onnx_export.thumbnail(x, thumb, oversample)
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=2e-6), (thumb, (got - want).abs().max())


@pytest.mark.parametrize("depth, size", [(8, (37, 53)), (8, (1, 1)), (8, (17, 1)), (3, (5, 300)), (1, (16, 16))])
def test_bilateral_slice_in_standard_operators_equals_the_reference(depth, size):
    """The exported trilinear slice (row lerps on the grid, then gathers) is grid_sample's, border clamp included
    (the first and last half cells of every axis, guidance 0 and 1): measured <= 5e-7."""
    torch.manual_seed(0)
    grid = torch.randn(2, reference.GRID_COEFFS, depth, 16, 16)
    g = (torch.rand(2, 1, *size) * 1.4 - 0.2).clamp(0, 1)  # a fifth of it at 0 or 1
    got, want = onnx_export.bilateral_slice(grid, g), reference.bilateral_slice(grid, g)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=0, atol=2e-6), (got - want).abs().max()


@pytest.mark.slow
def test_bilateral_grid_equals_its_enhance(exported):
    """bilateral_grid's file is model.enhance to float rounding (measured max abs diff 5.1e-6 at 1 x 1, <= 1.8e-6 at
    the other sizes, E 0.4-0.85), and the output's brightness rises with E. Past 1024 px a side the graph's thumbnail
    is the photo path's (block means first, what lowlight_core.enhance runs: enhance_photo; measured 4e-7), which
    model.enhance's plain resize approaches (measured at 1500 x 64: 0.03/255 with the first weights, 1.05/255 with
    those of 2026-12-07)."""
    session, model = exported("bilateral_grid"), registry.load_model("bilateral_grid", device="cpu")
    for i, shape in enumerate(SHAPES + [(3, 3, 2, 300)]):
        x, means = _dark(shape, seed=i), []
        for exposure in (0.4, 0.8):
            got = _run(session, x, exposure)
            with torch.no_grad():
                want = model.enhance(torch.from_numpy(x), exposure).numpy()
            assert np.abs(got - want).max() <= 2e-5, (shape, exposure, np.abs(got - want).max())
            means.append(got.mean(axis=(1, 2, 3)))
        assert (means[1] > means[0] + 0.1).all(), (shape, means)
    x = _dark((1, 3, 1500, 64))
    got = _run(session, x, 0.6)
    with torch.no_grad():
        photo = model.enhance_photo(torch.from_numpy(x), 0.6).numpy()
        plain = model.enhance(torch.from_numpy(x), 0.6).numpy()
    assert np.abs(got - photo).max() <= 2e-5 and np.abs(got - plain).max() <= 1.5 / 255
    assert np.array_equal(_run(session, x, 5.0), _run(session, x, EXPOSURE_RANGE[1]))  # clamped, not refused
