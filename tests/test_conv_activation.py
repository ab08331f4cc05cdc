"""The CPU inference copy runs the activation after a convolution in place on the convolution's output
(models.base._activations_in_place): the same values as the modules it replaces."""
import copy

import pytest
import torch
import torch.nn as nn

from lowlight_core.models.base import SigmoidInPlace, _activations_in_place, inference_model
from lowlight_core.models.registry import load_model

def _is_in_place(m):
    return getattr(m, "inplace", False) or isinstance(m, SigmoidInPlace)


ACTIVATIONS = [nn.ReLU(), nn.LeakyReLU(0.2), nn.PReLU(init=-0.13), nn.Sigmoid()]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("conv", [
    dict(in_channels=3, out_channels=8, kernel_size=3, padding=1),
    dict(in_channels=6, out_channels=4, kernel_size=5, padding=2, stride=2, bias=False),
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=2, dilation=2, groups=4)],
    ids=["3x3", "5x5-stride2-nobias", "dilated-groups"])
def test_in_place_activation_gives_the_same_values(conv, activation):
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(**conv), nn.Identity(), activation).eval()
    fast = _activations_in_place(copy.deepcopy(plain))
    assert _is_in_place(fast[2]) and not _is_in_place(plain[2]) and type(fast[0]) is nn.Conv2d
    x = torch.randn(2, conv["in_channels"], 29, 37).transpose(2, 3)[:, :, 1:]  # batch > 1, odd sizes, strided
    before = x.clone()
    with torch.inference_mode():
        assert torch.equal(fast(x), plain(x))
        x_cl = x.contiguous(memory_format=torch.channels_last)  # the layout the copy gets (oneDNN may sum otherwise)
        assert torch.equal(fast(x_cl), plain(x_cl))
    assert torch.equal(x, before)  # the input is never written, only the convolution's output


def test_only_activations_on_a_convolutions_output_run_in_place():
    seq = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.PReLU(4),  # per-channel slopes: kept
                        nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(), nn.Sigmoid())  # tanh: kept; sigmoid after tanh
    _activations_in_place(seq)
    assert [type(m) for m in seq] == [nn.ReLU, nn.Conv2d, nn.PReLU, nn.Conv2d, nn.Tanh, nn.Sigmoid]
    assert not seq[0].inplace  # reads the Sequential's input, which the caller still holds


def test_the_dln_copy_runs_its_activations_in_place():
    net = load_model("dln")
    fast = inference_model(net)
    in_place = [m for m in fast.modules() if _is_in_place(m)]
    assert len(in_place) == 45 and not any(isinstance(m, (nn.PReLU, nn.Sigmoid)) for m in fast.modules())
    assert sum(isinstance(m, nn.PReLU) for m in net.modules()) == 39  # the registry's model untouched
