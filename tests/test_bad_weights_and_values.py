"""Refused with a clear error: garbage or hostile weights files, eval with a gray image, meta tensors,
losses on an empty batch, NaN curve parameters."""
import io
import json
import math
import re
import zipfile

import numpy as np
import pytest
import torch

import lowlight_core
from lowlight_core import cli, losses
from lowlight_core.io import write_image
from lowlight_core.models import registry


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x", "y")
    return buf.getvalue()


def good_file_bytes(tmp_path) -> bytes:
    return registry.save_weights(registry.get_model_info("zero_dce_pp").build(), "zero_dce_pp",
                                 tmp_path / "good.pt").read_bytes()


@pytest.mark.parametrize("make,match", [
    (lambda tmp: b"hello world", "not a complete PyTorch file saved by lowlight"),
    (lambda tmp: b"", "not a complete PyTorch file saved by lowlight .*empty"),
    (lambda tmp: zip_bytes(), "not a complete PyTorch file"),
    (lambda tmp: good_file_bytes(tmp)[:2000], "not a complete PyTorch file"),
    (lambda tmp: torch_bytes([1, 2]), "not a lowlight weights file"),
    (lambda tmp: torch_bytes({"model": "zero_dce_pp", "config": [3], "state_dict": {}}), "'config' must be a dict"),
    (lambda tmp: torch_bytes({"model": "zero_dce_pp", "config": {}, "state_dict": [1]}), "must map names to tensors"),
    (lambda tmp: torch_bytes({"model": "dln", "config": {"width": 10**6}, "state_dict": {}}),
     "asks for [0-9,]+ parameters, more than the limit"),
])
def test_garbage_and_hostile_weights_files_get_a_clear_message(tmp_path, make, match):
    """Item 10: "...: 101", "list index out of range"; a config asking for a huge network was built as is."""
    path = tmp_path / "w.pt"
    path.write_bytes(make(tmp_path))
    name = "dln" if b"dln" in path.read_bytes() else "zero_dce_pp"
    with pytest.raises(ValueError, match=match):
        registry.load_model(name, weights=path)


def test_nan_weights_are_refused_and_a_nan_result_is_never_returned(tmp_path):
    net = registry.get_model_info("zero_dce_pp").build()
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = math.nan
    path = registry.save_weights(net, "zero_dce_pp", tmp_path / "nan.pt")
    with pytest.raises(ValueError, match="NaN or Inf"):
        registry.load_model("zero_dce_pp", weights=path)

    class NanCurve(torch.nn.Module):  # NaN curve parameters alpha from the model itself
        def enhance(self, x, exposure, iterations):
            return lowlight_core.ops.le_curve(x, torch.full_like(x, math.nan), iterations)

    with pytest.raises(ValueError, match="'NanCurve' produced NaN or Inf values"):
        lowlight_core.enhance(np.full((8, 8, 3), 30, np.uint8), model=NanCurve(), device="cpu")


def test_meta_tensor_gets_a_clear_error():
    with pytest.raises(ValueError, match="'meta' device"):
        lowlight_core.enhance(torch.empty(3, 8, 8, device="meta"), model="gamma")


@pytest.mark.parametrize("call", [
    lambda e: losses.exposure_loss(e),
    lambda e: losses.spatial_consistency_loss(e, e),
    lambda e: losses.color_constancy_loss(e),
    lambda e: losses.illumination_smoothness_loss(e),
    lambda e: losses.color_loss(e, e),
    lambda e: losses.dln_loss(e, e),
    lambda e: losses.zero_reference_loss(e, e, e),
    lambda e: losses.lsgan_generator_loss(e),
    lambda e: losses.texture_loss_generator(torch.zeros(0, 2)),
])
def test_losses_refuse_an_empty_batch(call):
    """Item 10: the mean over no samples came back as NaN."""
    with pytest.raises(ValueError, match="empty input of shape"):
        call(torch.rand(0, 3, 16, 16))


def test_eval_mean_colour_cast_skips_gray_images(tmp_path, capsys):
    """Item 10: one gray image turned the mean colour-cast column into NaN."""
    rng = np.random.default_rng(0)
    for d in ("low", "high"):
        (tmp_path / d).mkdir()
    for name, shape in (("rgb", (16, 16, 3)), ("gray", (16, 16))):
        high = rng.integers(60, 200, shape).astype(np.uint8)
        write_image(tmp_path / "high" / f"{name}.png", high)
        write_image(tmp_path / "low" / f"{name}.png", (high // 4).astype(np.uint8))
    report = tmp_path / "r.json"
    assert cli.main(["eval", "--low", str(tmp_path / "low"), "--high", str(tmp_path / "high"), "--model", "gamma",
                     "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["images"]["gray"]["gamma"]["color_shift"] is None
    assert data["mean"]["gamma"]["color_shift"] == data["images"]["rgb"]["gamma"]["color_shift"]
    # the table's mean row has no nan cell (the word, not a substring: the legend says "luminance")
    assert not re.search(r"\bnan\b", capsys.readouterr().out.split("mean")[-1], re.IGNORECASE)
