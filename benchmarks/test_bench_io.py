"""read_image of 16-bit colour PNGs (the project's own decoder): a photo-sized image whose rows use every
filter, and a 200,000 x 1 Paeth strip (issue 13: 8.6 s when Average/Paeth were unfiltered in Python)."""
import struct
import zlib

import numpy as np
import pytest

from lowlight_core.io import read_image


def _png16(rows: np.ndarray, w: int, h: int) -> bytes:
    def chunk(t, body):
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("w,h", [(1200, 900), (200_000, 1)])
def test_read_png16_any_filter(benchmark, tmp_path, w, h):
    rows = np.random.default_rng(0).integers(0, 256, (h, 1 + 6 * w), dtype=np.uint8)
    rows[:, 0] = np.arange(h) % 5 if h > 1 else 4  # None, Sub, Up, Average, Paeth in turn; the strip: Paeth
    path = tmp_path / "x.png"
    path.write_bytes(_png16(rows, w, h))
    benchmark.group = f"read_image 16-bit PNG {w}x{h}"
    assert benchmark(read_image, path)[0].shape == (h, w, 3)
