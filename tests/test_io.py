"""Image files: real files in every format, bit depth, EXIF orientation, ICC, size limits, bad files."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from lowlight_core import io as lio
from lowlight_core.io import read_image, write_image

RNG = np.random.default_rng(0)


def _image(h, w, c, dtype):
    shape = (h, w) if c == 1 else (h, w, c)
    if dtype == np.float32:
        return RNG.random(shape, dtype=np.float32)
    top = np.iinfo(dtype).max
    return RNG.integers(0, top + 1, shape).astype(dtype)


@pytest.fixture(scope="module")
def srgb_icc():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


LOSSLESS = [("png", c, dt) for c in (1, 2, 3, 4) for dt in (np.uint8, np.uint16)]
LOSSLESS += [("tif", c, dt) for c in (1, 2, 3, 4) for dt in (np.uint8, np.uint16, np.float32)]
LOSSLESS += [("bmp", c, np.uint8) for c in (1, 3)]


@pytest.mark.parametrize("ext,channels,dtype", LOSSLESS)
def test_lossless_round_trip_keeps_values_shape_and_dtype(tmp_path, ext, channels, dtype):
    a = _image(13, 17, channels, dtype)
    path = write_image(tmp_path / f"x.{ext}", a)
    b, info = read_image(path)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(b, a)
    assert info["bit_depth"] == a.dtype.itemsize * 8
    assert info["format"] == lio.EXTENSIONS["." + ext]


def test_16bit_rgb_png_is_really_16bit_on_disk(tmp_path):
    a = _image(5, 6, 3, np.uint16)
    write_image(tmp_path / "x.png", a)
    with Image.open(tmp_path / "x.png") as im:  # Pillow itself reads only 8 bits of it: it is a valid PNG
        assert im.size == (6, 5) and im.mode == "RGB"
    data = (tmp_path / "x.png").read_bytes()
    assert data[24] == 16 and data[25] == 2  # IHDR bit depth and colour type


def test_jpeg_round_trip_is_close(tmp_path):
    a = np.clip(np.linspace(0, 255, 32)[None, :, None] + np.zeros((24, 32, 3)), 0, 255).astype(np.uint8)
    b, info = read_image(write_image(tmp_path / "x.jpg", a))
    assert b.shape == a.shape and b.dtype == np.uint8 and info["format"] == "JPEG"
    assert np.abs(b.astype(int) - a).mean() < 2


def test_float_to_png_is_stored_as_16bit_and_to_jpeg_as_8bit(tmp_path):
    a = _image(8, 9, 3, np.float32)
    b, _ = read_image(write_image(tmp_path / "f.png", a))
    assert b.dtype == np.uint16
    np.testing.assert_array_equal(b, np.rint(a * 65535).astype(np.uint16))
    c, _ = read_image(write_image(tmp_path / "f.bmp", a))
    np.testing.assert_array_equal(c, np.rint(a * 255).astype(np.uint8))


def test_uint16_to_uint8_rounds_to_nearest():
    a = np.array([0, 128, 129, 257, 385, 386, 65535], np.uint16)
    expected = np.rint(a / 257).astype(np.uint8)
    np.testing.assert_array_equal(lio.to_uint8(a), expected)


@pytest.mark.parametrize("ext", ["jpg", "bmp"])
def test_formats_without_alpha_refuse_rgba(tmp_path, ext):
    with pytest.raises(ValueError, match="alpha"):
        write_image(tmp_path / f"x.{ext}", _image(4, 4, 4, np.uint8))
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def _png_all_filters(a: np.ndarray, depth: int, kinds: int = 5) -> bytes:
    """A PNG whose rows cycle through the first `kinds` filter types, encoded by a slow per-byte reference."""
    h, w, c = a.shape
    bpp = c * depth // 8
    rows = np.ascontiguousarray(a, dtype=">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(h, w * bpp)
    rows = rows.astype(int)
    lines = []
    for r in range(h):
        kind = r % kinds
        line = [kind]
        for i in range(w * bpp):
            left = rows[r, i - bpp] if i >= bpp else 0
            up = rows[r - 1, i] if r else 0
            up_left = rows[r - 1, i - bpp] if r and i >= bpp else 0
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            paeth = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
            pred = [0, left, up, (left + up) // 2, paeth][kind]
            line.append((rows[r, i] - pred) % 256)
        lines.append(bytes(line))
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]

    def chunk(t, body):
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(lines))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("kinds", [3, 5])  # 3: only None/Sub/Up
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_decoder_undoes_every_row_filter(tmp_path, channels, kinds):
    a16 = _image(11, 7, 4, np.uint16)[:, :, :channels]
    (tmp_path / "a16.png").write_bytes(_png_all_filters(a16, 16, kinds))
    b, _ = read_image(tmp_path / "a16.png")
    np.testing.assert_array_equal(b, a16[:, :, 0] if channels == 1 else a16)
    # the same decoder on 8 bits agrees with Pillow
    a8 = _image(11, 7, 4, np.uint8)[:, :, :channels]
    data = _png_all_filters(a8, 8, kinds)
    mine, _ = lio.decode_png(data)
    (tmp_path / "a8.png").write_bytes(data)
    np.testing.assert_array_equal(mine, np.asarray(Image.open(tmp_path / "a8.png")))


def _with_orientation(path, a, orientation, **save):
    exif = Image.Exif()
    exif[lio.ORIENTATION_TAG] = orientation
    exif[0x010F] = "TestCam"  # Make: an unrelated tag that must survive
    Image.fromarray(a).save(path, exif=exif.tobytes(), **save)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_like_pillow_and_reset_on_write(tmp_path, orientation):
    a = _image(5, 8, 3, np.uint8)
    _with_orientation(tmp_path / "o.png", a, orientation)
    b, info = read_image(tmp_path / "o.png")
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    np.testing.assert_array_equal(b, expected)
    assert info["orientation"] == orientation
    # written back upright: reading it again must not turn it a second time, and Make is kept
    c, info2 = read_image(write_image(tmp_path / "out.png", b, info))
    np.testing.assert_array_equal(c, b)
    assert info2["orientation"] == 1
    assert Image.open(tmp_path / "out.png").getexif()[0x010F] == "TestCam"


def test_jpeg_orientation_6_is_rotated_clockwise(tmp_path):
    a = np.zeros((40, 64, 3), np.uint8)
    a[:8, :8] = 255  # a white top-left corner; rotated 90 degrees clockwise it is at the top right
    _with_orientation(tmp_path / "o6.jpg", a, 6, quality=95)
    b, info = read_image(tmp_path / "o6.jpg")
    assert b.shape == (64, 40, 3) and info["orientation"] == 6
    assert b[:8, -8:].mean() > 200 and b[:8, :8].mean() < 50
    write_image(tmp_path / "out.jpg", b, info)
    assert Image.open(tmp_path / "out.jpg").getexif()[lio.ORIENTATION_TAG] == 1


@pytest.mark.parametrize("ext,dtype", [("png", np.uint8), ("png", np.uint16), ("jpg", np.uint8),
                                       ("tif", np.uint8), ("tif", np.uint16)])
def test_icc_profile_kept(tmp_path, srgb_icc, ext, dtype):
    a = _image(6, 7, 3, dtype)
    write_image(tmp_path / f"x.{ext}", a, {"icc_profile": srgb_icc})
    b, info = read_image(tmp_path / f"x.{ext}")
    assert info["icc_profile"] == srgb_icc
    # and carried on through another write, to another format
    write_image(tmp_path / "y.png", b, info)
    assert read_image(tmp_path / "y.png")[1]["icc_profile"] == srgb_icc


def test_dpi_kept(tmp_path):
    for dtype in (np.uint8, np.uint16):
        write_image(tmp_path / "d.png", _image(4, 4, 3, dtype), {"dpi": (300, 300)})
        assert read_image(tmp_path / "d.png")[1]["dpi"] == pytest.approx((300, 300), abs=0.01)


@pytest.mark.parametrize("ext,dtype", [("png", np.uint8), ("png", np.uint16), ("jpg", np.uint8),
                                       ("tif", np.uint8), ("bmp", np.uint8)])
def test_decompression_bomb_refused(tmp_path, monkeypatch, ext, dtype):
    path = write_image(tmp_path / f"big.{ext}", _image(40, 50, 3, dtype))
    with pytest.raises(ValueError, match=r"big\..*2000.*limit"):
        read_image(path, max_pixels=1999)
    assert read_image(path, max_pixels=2000)[0].shape == (40, 50, 3)
    monkeypatch.setattr(lio, "MAX_PIXELS", 100)  # the module-wide default
    with pytest.raises(ValueError, match="limit"):
        read_image(path)


def test_pillow_limit_does_not_override_ours(tmp_path, monkeypatch):
    path = write_image(tmp_path / "x.png", _image(40, 50, 3, np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow would refuse it; our limit allows it
    assert read_image(path)[0].shape == (40, 50, 3)
    assert Image.MAX_IMAGE_PIXELS == 10  # restored


@pytest.mark.parametrize("ext,dtype", [("png", np.uint8), ("png", np.uint16), ("jpg", np.uint8),
                                       ("tif", np.uint16), ("bmp", np.uint8)])
def test_truncated_file_refused(tmp_path, ext, dtype):
    path = write_image(tmp_path / f"t.{ext}", _image(64, 64, 3, dtype))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"t\.%s.*(truncated|corrupt)" % ext):
        read_image(path)


def test_corrupt_png_data_refused(tmp_path):
    path = write_image(tmp_path / "c.png", _image(16, 16, 3, np.uint16))
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF  # inside IDAT: the chunk CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="c.png.*corrupt"):
        read_image(path)


@pytest.mark.parametrize("content", [b"", b"hello, not an image", bytes(RNG.integers(0, 256, 4096, dtype=np.uint8))])
def test_non_image_refused(tmp_path, content):
    path = tmp_path / "noise.png"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="noise.png: not a PNG, JPEG, TIFF or BMP"):
        read_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_unsupported_tiff_content_refused(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "i16.tif", np.zeros((4, 4), np.int16))
    with pytest.raises(ValueError, match="i16.tif.*int16"):
        read_image(tmp_path / "i16.tif")
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((4, 4, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(ValueError, match="five.tif.*5 samples"):
        read_image(tmp_path / "five.tif")


def test_palette_and_bilevel_images_become_rgb_and_gray(tmp_path):
    Image.fromarray(_image(6, 6, 3, np.uint8)).convert("P").save(tmp_path / "p.png")
    a, _ = read_image(tmp_path / "p.png")
    assert a.shape == (6, 6, 3) and a.dtype == np.uint8
    Image.fromarray(_image(6, 6, 1, np.uint8) > 127).save(tmp_path / "b.png")
    b, _ = read_image(tmp_path / "b.png")
    assert b.dtype == np.uint8 and set(np.unique(b)) <= {0, 255}


@pytest.mark.parametrize("array,match", [
    (np.zeros((4, 4, 5), np.uint8), "shape"),
    (np.zeros((0, 4), np.uint8), "empty"),
    (np.zeros((4, 4), np.int32), "dtype"),
    (np.full((4, 4), np.nan, np.float32), "NaN"),
])
def test_write_refuses_bad_arrays(tmp_path, array, match):
    with pytest.raises(ValueError, match=match):
        write_image(tmp_path / "x.png", array)


def test_write_refuses_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"\.gif"):
        write_image(tmp_path / "x.gif", np.zeros((4, 4), np.uint8))
