"""Files that hold several images are read whole or refused with their image count, never cut silently to
the first: animated PNG (8 and 16 bits), MPO, TIFF pages, SubIFDs and full-size pages flagged reduced; GIF
and WebP are refused by name. The files are made here; tests/test_io_fuzz.py mutates the same makers' output."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from lowlight_core.io import encode_png16, read_image

RNG = np.random.default_rng(5)


def frames(n, shape=(6, 8, 3)):
    return [RNG.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def pillow_file(fmt: str, n: int, **kwargs) -> bytes:
    """An n-frame file that Pillow writes (APNG, GIF, WebP, MPO)."""
    ims = [Image.fromarray(a) for a in frames(n)]
    buf = io.BytesIO()
    ims[0].save(buf, format=fmt, save_all=True, append_images=ims[1:], **kwargs)
    return buf.getvalue()


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def apng16(n: int) -> bytes:
    """A 16-bit RGB APNG of n frames (Pillow writes 8 bits only): acTL, then fcTL + IDAT, fcTL + fdAT ..."""
    a = RNG.integers(0, 65536, (5, 4, 3), dtype=np.uint16)
    png = encode_png16(a)
    ihdr_end = 8 + 25
    idat = png[ihdr_end:-12]  # the IDAT chunk(s)
    data = zlib.decompress(idat[8:-4])
    fctl = lambda seq: _chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, 4, 5, 0, 0, 1, 10, 0, 0))
    out = png[:ihdr_end] + _chunk(b"acTL", struct.pack(">II", n, 0)) + fctl(0) + idat
    seq = 1
    for _ in range(n - 1):
        out += fctl(seq) + _chunk(b"fdAT", struct.pack(">I", seq + 1) + zlib.compress(data))
        seq += 2
    return out + png[-12:]


def tiff(kind: str) -> bytes:
    """TIFF layouts: 'pages' two pages; 'subifd_full' a full-size image in a SubIFD; 'reduced_full' a
    second page of full size flagged NewSubfileType=1; 'pyramid' and 'thumbnail': one image and smaller
    reduced ones (those do not count)."""
    a, b = frames(2, (8, 10))
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as t:
        if kind == "pages":
            t.write(a), t.write(b)
        elif kind == "subifd_full":
            t.write(a, subifds=1), t.write(b)  # the SubIFD is the same size: a second image
        elif kind == "reduced_full":
            t.write(a), t.write(b, subfiletype=1)
        elif kind == "pyramid":
            t.write(a, subifds=1), t.write(a[::2, ::2], subfiletype=1)
        else:
            t.write(a), t.write(a[::4, ::4], subfiletype=1)
    return buf.getvalue()


# name -> (bytes, images in it); read_image must refuse each, naming the count (0: refused by format name)
def multi_frame_files() -> dict[str, tuple[bytes, int]]:
    return {
        "apng8.png": (pillow_file("PNG", 3), 3),
        "apng16.png": (apng16(2), 2),
        "stereo.mpo.jpg": (pillow_file("MPO", 2), 2),
        "pages.tif": (tiff("pages"), 2),
        "subifd.tif": (tiff("subifd_full"), 2),
        "reduced_full.tif": (tiff("reduced_full"), 2),
        "anim.gif": (pillow_file("GIF", 3), 3),
        "anim.webp": (pillow_file("WEBP", 2, lossless=True), 2),
    }


FILES = multi_frame_files()


@pytest.mark.parametrize("name", sorted(FILES))
def test_several_images_are_refused_with_their_count(tmp_path, name):
    data, n = FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError) as e:
        read_image(path)
    message = str(e.value)
    assert message.startswith(str(path)) and (f"{n} frames" in message or f"{n} pages" in message), message


def test_a_tiff_image_in_a_subifd_or_flagged_reduced_is_read_by_page(tmp_path):
    for kind in ("subifd_full", "reduced_full"):
        path = tmp_path / f"{kind}.tif"
        path.write_bytes(tiff(kind))
        with tifffile.TiffFile(path) as t:
            second = (t.pages[0].pages[0] if kind == "subifd_full" else t.pages[1]).asarray()
        got, _ = read_image(path, page=1)
        assert np.array_equal(got, second), kind


@pytest.mark.parametrize("kind", ["pyramid", "thumbnail"])
def test_reduced_copies_of_the_image_do_not_count(tmp_path, kind):
    path = tmp_path / f"{kind}.tif"
    path.write_bytes(tiff(kind))
    assert read_image(path)[0].shape == (8, 10)


def test_an_apng_of_one_frame_and_an_mpo_thumbnail_are_one_image(tmp_path):
    (tmp_path / "one.png").write_bytes(apng16(1))
    assert read_image(tmp_path / "one.png")[0].shape == (5, 4, 3)
    big, small = Image.fromarray(frames(1, (16, 12, 3))[0]), Image.fromarray(frames(1, (4, 3, 3))[0])
    big.save(tmp_path / "thumb.jpg", format="MPO", save_all=True, append_images=[small])
    assert read_image(tmp_path / "thumb.jpg")[0].shape == (16, 12, 3)
