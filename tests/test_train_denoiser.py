"""The learned denoiser's training (training.tasks.denoiser): the real-pair targets (the reference frame mapped
into the enhancement's tone by a local linear fit) and a short fine-tune on real pairs end to end."""
from dataclasses import replace

import numpy as np
import skimage.data as skd
import torch
from PIL import Image

from lowlight_core import denoise_net
from training.tasks import denoiser


def photo(size=96) -> torch.Tensor:
    im = Image.fromarray(skd.astronaut())
    im.thumbnail((size, size))
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_aligned_reference_takes_the_enhancements_tone_and_the_references_structure():
    ref = photo()
    y = (ref * torch.tensor([0.6, 0.5, 0.7]).view(1, 3, 1, 1) + 0.2)  # another exposure and colour: exact
    t = denoiser.aligned_reference(y, ref, radius=8)
    assert (t - y).abs().max() < 2e-3 < 0.05 < (ref - y).abs().mean()
    curved = (ref.pow(0.7) * torch.tensor([0.9, 0.8, 1.0]).view(1, 3, 1, 1))  # another tone curve: close
    t = denoiser.aligned_reference(curved, ref, radius=8)
    assert (t - curved).abs().mean() < 0.3 * (ref - curved).abs().mean()
    noisy = (y + 0.06 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    t = denoiser.aligned_reference(noisy, ref, radius=8)
    assert (t - y).abs().mean() < 0.4 * (noisy - y).abs().mean()  # the noise is not in the target
    # y that is noise alone, uncorrelated with ref: the target is about its local mean, not the reference
    pure = torch.rand(ref.shape, generator=torch.Generator().manual_seed(1))
    t = denoiser.aligned_reference(pure, ref, radius=8)
    assert t.std() < 0.3 * pure.std()
    assert abs(t.mean() - pure.mean()) < 0.01


def test_a_short_fine_tune_on_real_pairs(make_data_dir, tmp_path):
    data = make_data_dir({"sice_part1": {1: (0, 0.15), 2: (0, 1.0), 3: (1, 0.12), 4: (1, 0.9)}}, 96)
    recipe = replace(denoiser.RECIPE, minutes=0.05, real_share=1.0, region=64, crop=32, batch=4,
                     crops_per_region=2)
    regions = denoiser.real_regions(recipe, data)
    assert len(regions) >= 1
    x, y, t = regions[0]
    assert x.shape == y.shape == t.shape and x.shape[:2] == (1, 3)
    assert float(y.mean()) > 2 * float(x.mean())  # enhanced to its reference's brightness
    path = denoiser.train(tmp_path, recipe, data)
    net = denoise_net.load(path)
    assert isinstance(net, denoise_net.Denoiser)
    meta = torch.load(path, weights_only=False)["meta"]
    assert meta["steps"] >= 1 and meta["recipe"]["real_share"] == 1.0
