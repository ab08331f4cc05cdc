"""Property test of the readers: mutated valid PNG (8/16-bit, every row filter), JPEG, TIFF and BMP bytes
give a correct image or a ValueError naming the file: never another exception, a hang, or a big allocation.

Small and derandomized so it runs in seconds in `make test`; raise FUZZ_EXAMPLES to search harder."""
import io
import os
import struct
import tempfile
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lowlight_core.io import read_image, write_image
from test_multiframe_inputs import multi_frame_files

LIMIT = 1 << 20  # pixels: every case decodes to at most 8 MiB
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
RNG = np.random.default_rng(7)


def _png_all_filters(a: np.ndarray) -> bytes:
    """16-bit RGB PNG whose rows cycle through the five filters (exercises the own decoder's unfilter)."""
    h, w, c = a.shape
    rows = a.astype(">u2").view(np.uint8).reshape(h, w * c * 2).astype(int)
    bpp, lines = c * 2, []
    for r in range(h):
        kind, line = r % 5, [r % 5]
        for i in range(w * bpp):
            left = rows[r, i - bpp] if i >= bpp else 0
            up = rows[r - 1, i] if r else 0
            ul = rows[r - 1, i - bpp] if r and i >= bpp else 0
            p = left + up - ul
            paeth = left if abs(p - left) <= abs(p - up) and abs(p - left) <= abs(p - ul) else (
                up if abs(p - up) <= abs(p - ul) else ul)
            line.append((rows[r, i] - [0, left, up, (left + up) // 2, paeth][kind]) % 256)
        lines.append(bytes(line))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + _chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"profile" * 10))
            + _chunk(b"IDAT", zlib.compress(b"".join(lines))) + _chunk(b"IEND", b""))


def _chunk(ctype, body):
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _seeds() -> dict[str, bytes]:
    rgb = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    out = {"png16_filters": _png_all_filters(RNG.integers(0, 65536, (7, 6, 3), dtype=np.uint16))}
    with tempfile.TemporaryDirectory() as d:
        for name, array in [("png8.png", rgb), ("png16.png", RNG.integers(0, 65536, (8, 5, 4), dtype=np.uint16)),
                            ("gray16.png", RNG.integers(0, 65536, (6, 7), dtype=np.uint16)),
                            ("jpeg.jpg", rgb), ("bmp.bmp", rgb), ("tiff.tif", RNG.integers(0, 65536, (6, 5, 3),
                                                                                       dtype=np.uint16))]:
            out[name] = write_image(Path(d) / name, array).read_bytes()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", progressive=True)
    out["jpeg_progressive"] = buf.getvalue()
    buf = io.BytesIO()
    tifffile.imwrite(buf, RNG.integers(0, 256, (5, 4), dtype=np.uint8), compression="deflate", predictor=True)
    out["tiff_predictor"] = buf.getvalue()
    return out


SEEDS = _seeds()
MULTI = multi_frame_files()  # several images per file: refused with the count (mutated: any clear outcome)
POOL = {**SEEDS, **{name: data for name, (data, _) in MULTI.items()}}


def _fix_png_crcs(data: bytearray) -> bytearray:
    """Recompute the CRC of every chunk that still parses, so mutations reach past the CRC check."""
    pos = 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        end = pos + 8 + length
        if end + 4 > len(data):
            break
        data[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(data[pos + 4:end])))
        pos = end + 4
    return data


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(POOL)))
    data = bytearray(POOL[name])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "byte", "header", "cut", "insert", "truncate"]))
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op in ("byte", "header"):
            pos = pos if op == "byte" else pos % min(len(data), 40)  # headers: sizes, depths, offsets
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[max(pos, 1):]
        if not data:
            data = bytearray(b"\0")
    if data.startswith(b"\x89PNG") and draw(st.booleans()):
        data = _fix_png_crcs(data)
    return name, bytes(data)


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


@pytest.fixture(scope="module")
def case_file():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d) / "case"


@pytest.fixture(scope="module")
def memory_guard():
    """The whole fuzz run may not raise the process's peak memory by a GB (VmHWM, reset first)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _kib("VmRSS:")
    yield
    assert _kib("VmHWM:") - base < 1 << 20, "a mutated file made the reader allocate over 1 GiB"


@settings(max_examples=EXAMPLES, derandomize=True, deadline=timedelta(seconds=20), database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=mutated())
def test_mutated_files_decode_or_raise_a_clear_error(case_file, memory_guard, case):
    name, data = case
    case_file.write_bytes(data)
    try:
        array, info = read_image(case_file, max_pixels=LIMIT)
    except ValueError as e:
        assert str(case_file) in str(e), f"{name}: the error does not name the file: {e}"
        return
    assert isinstance(array, np.ndarray) and array.ndim in (2, 3) and 0 < array.shape[0] * array.shape[1] <= LIMIT
    assert array.dtype in (np.uint8, np.uint16, np.float32) and (array.ndim == 2 or 1 <= array.shape[2] <= 4)
    assert info["format"] in ("PNG", "JPEG", "TIFF", "BMP")


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_is_a_valid_file(tmp_path, name):
    (tmp_path / "seed").write_bytes(SEEDS[name])
    assert read_image(tmp_path / "seed")[0].size > 0


@pytest.mark.parametrize("name", sorted(MULTI))
def test_every_multi_image_seed_is_refused_with_its_count(tmp_path, name):
    data, n = MULTI[name]
    (tmp_path / "seed").write_bytes(data)
    with pytest.raises(ValueError, match=rf"seed: .*\b{n} (frames|pages)"):
        read_image(tmp_path / "seed")
