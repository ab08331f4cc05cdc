import os

# OpenMP spin-waiting makes a loaded 2-core box crawl; see shared BUILD-NOTES.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))]


@pytest.fixture(scope="session")
def native():
    """The native ops must be built: CPU tests never skip, they fail with the reason."""
    from lowlight_core import ops

    assert ops._C is not None, ops._native_error
    return torch.ops.lowlight
