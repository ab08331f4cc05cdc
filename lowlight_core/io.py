"""Read and write PNG, JPEG, TIFF and BMP images without losing bit depth or colour metadata.

`read_image(path)` returns `(array, info)`: array is H x W or H x W x C (C = 2 gray+alpha, 3 RGB,
4 RGBA) with the file's own dtype (uint8, uint16 or float32); info holds `format`, `bit_depth`,
`icc_profile` (bytes or None), `exif` (bytes or None), `orientation` (the file's EXIF orientation,
already applied to the array), `dpi` and `path`. `write_image(path, array, info)` writes it back.

Choices (each one where the usual library would silently lose something):
- 16-bit colour PNG: Pillow decodes it to 8 bits, so PNG files with 16-bit samples are decoded and
  encoded here (zlib + the five PNG row filters); 16-bit gray and all 8-bit PNGs go through Pillow.
- TIFF goes through tifffile (any of uint8/uint16/float32, 1-4 samples, keeps the ICC profile);
  the EXIF sub-IFD of a TIFF is neither read nor written. A multi-page TIFF is refused with the page count
  (never silently cut to its first page) unless `page=K` picks one; SubIFDs count as pages, thumbnails and
  pyramid levels (reduced images smaller than the largest) do not.
- Several images in any other file are refused with their count too (an animated PNG, an MPO stereo JPEG;
  an MPO's thumbnails and gain maps do not count); GIF and WebP are not read (refused, naming the format).
- Orientation: the EXIF orientation is applied on read and written back as 1 (top-left).
- JPEG and BMP hold 8 bits and no alpha here: uint16/float data are rounded to uint8 for them and an
  alpha channel is refused. PNG stores float data as 16 bits.
- Limits, checked on the header before decoding: at most `max_pixels` pixels (default `MAX_PIXELS`, 200 MP)
  and `BYTES_PER_PIXEL` x that many bytes of output (default 1.6 GB: 200 MP of 16-bit RGBA; a float32 RGBA
  TIFF, 16 bytes per pixel, gets 100 MP). Decoding holds the output plus about one more copy at most (PNG
  rows inflated and unfiltered in bands, Pillow's pixels copied out in bands): a peak of about 3.2 GB at the
  default limit; `decode_bytes_limit()` gives both numbers. ICC profiles in PNG inflate to at most
  MAX_ICC_BYTES (16 MiB), larger ones are dropped with a warning.
Every problem with a file raises ValueError (FileNotFoundError when it does not exist) naming it.
"""
from __future__ import annotations

import io
import os
import socket
import struct
import sys
import threading
import uuid
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

MAX_PIXELS = 200_000_000
EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def image_format(path) -> str | None:
    """The format name ("PNG", ...) that the file name's extension stands for, or None."""
    return EXTENSIONS.get(Path(path).suffix.lower())


# ---------------------------------------------------------------- conversions between dtypes

def to_float(array: np.ndarray) -> np.ndarray:
    """uint8 / uint16 -> float32 in [0, 1]; float arrays -> float32 unchanged in value."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535)
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    raise ValueError(f"unsupported dtype {array.dtype} (expected uint8, uint16 or float)")


def from_float(array: np.ndarray, dtype) -> np.ndarray:
    """float in [0, 1] -> dtype; integers are clipped and rounded to nearest (ties to even)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return array.astype(dtype, copy=False)
    top = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(dtype)
    if top is None:
        raise ValueError(f"unsupported dtype {dtype} (expected uint8, uint16 or float)")
    return np.rint(np.clip(array, 0, 1) * np.float32(top)).astype(dtype)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Any supported image array as uint8 (uint16 and float rounded to nearest)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:  # exact integer rounding of x * 255 / 65535 (= x / 257)
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return from_float(to_float(array), np.uint8)


# ---------------------------------------------------------------- orientation and EXIF

def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF `orientation` (1-8) to its upright view."""
    if orientation in (5, 6, 7, 8):
        array = array.swapaxes(0, 1)  # transpose first; each case is then a flip
    flip_rows, flip_cols = {2: (0, 1), 3: (1, 1), 4: (1, 0), 6: (0, 1), 7: (1, 1), 8: (1, 0)}.get(orientation, (0, 0))
    if flip_rows:
        array = array[::-1]
    if flip_cols:
        array = array[:, ::-1]
    return np.ascontiguousarray(array)


def _parse_exif(data: bytes | None):
    if not data:
        return None
    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception:  # malformed EXIF must not make the pixels unreadable
        return None
    return exif


def _orientation(exif) -> int:
    """The EXIF orientation 1-8; anything else (text, a list, out of range) counts as 1, upright."""
    value = exif.get(ORIENTATION_TAG, 1) if exif is not None else 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _exif_upright(data: bytes | None) -> bytes | None:
    """The EXIF block with its orientation set to 1, because the pixels were turned upright on read."""
    exif = _parse_exif(data)
    if exif is None:
        return None
    if ORIENTATION_TAG in exif:
        exif[ORIENTATION_TAG] = 1
    try:
        return exif.tobytes()
    except Exception:
        warnings.warn("EXIF data could not be re-encoded and was dropped", stacklevel=3)
        return None


# ---------------------------------------------------------------- reading

def _bad(path, problem: str) -> ValueError:
    return ValueError(f"{path}: {problem}")


BYTES_PER_PIXEL = 8  # output bytes allowed per pixel of the limit: 16-bit RGBA (a float32 RGBA TIFF counts 16)


def decode_bytes_limit(max_pixels: int | None = None) -> tuple[int, int]:
    """(largest output array, peak decode memory) in bytes under a pixel limit (default MAX_PIXELS)."""
    out = (MAX_PIXELS if max_pixels is None else max_pixels) * BYTES_PER_PIXEL
    return out, 2 * out


def _check_size(path, width: int, height: int, max_pixels: int | None, pixel_bytes: int = 1) -> None:
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if width * height > limit:
        raise _bad(path, f"image is {width}x{height} = {width * height} pixels, more than the limit of {limit} "
                         "(refused as a possible decompression bomb; raise max_pixels to read it)")
    if width * height * pixel_bytes > decode_bytes_limit(limit)[0]:
        raise _bad(path, f"image is {width}x{height} with {pixel_bytes} bytes per pixel = "
                         f"{width * height * pixel_bytes} bytes, more than the limit of {limit * BYTES_PER_PIXEL} "
                         f"({BYTES_PER_PIXEL} bytes x {limit} pixels; raise max_pixels to read it)")
    if width < 1 or height < 1:
        raise _bad(path, f"image has an empty size {width}x{height}")


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(12)
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    for name, magic in (("GIF", b"GIF8"), ("WebP", b"RIFF")):
        if head.startswith(magic) and (name != "WebP" or head[8:12] == b"WEBP"):  # RIFF: also WAV, AVI
            raise _bad(path, f"a {name} file{_frames_note(path)}: not supported (PNG, JPEG, TIFF or BMP only)")
    raise _bad(path, "not a PNG, JPEG, TIFF or BMP image")


def _frames_note(path: Path) -> str:
    """' of N frames' when Pillow can count them (an unsupported animation is named with its frame count)."""
    try:
        with _pillow_without_bomb_check(), Image.open(path) as im:
            n = getattr(im, "n_frames", 1)
    except Exception:
        return ""
    return f" of {n} frames" if n > 1 else ""


def read_image(path, max_pixels: int | None = None, page: int | None = None) -> tuple[np.ndarray, dict]:
    """Decode an image file; see the module docstring for the array and the info dict.

    page: which image of a multi-page TIFF (None: the file must hold one image, else a ValueError says how many).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = _sniff(path)
    if page is not None and fmt != "TIFF":
        raise _bad(path, f"page={page} applies to TIFF files only, this is {fmt}")
    if fmt == "TIFF":
        array, info = _read_tiff(path, max_pixels, page)
    elif fmt == "PNG" and _png_needs_own_decoder(path):
        _png_head(path)  # refuses an animation
        array, info = _read_png16(path, max_pixels)
    else:
        array, info = _read_pillow(path, fmt, max_pixels)
    array = apply_orientation(array, info["orientation"])
    info.update(format=fmt, path=str(path), dtype=array.dtype.name, bit_depth=array.dtype.itemsize * 8)
    return array, info


_PIL_LOCK = threading.Lock()


@contextmanager
def _pillow_without_bomb_check():
    # read_image checks the pixel count itself, against its own (configurable) limit, right after
    # Pillow parsed the header and before anything is decoded; Pillow's fixed limit would override it.
    with _PIL_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)


def _read_pillow(path: Path, fmt: str, max_pixels):
    iccp = _png_head(path) if fmt == "PNG" else None
    with open(path, "rb") as f:
        try:
            # Pillow never sees a PNG's iCCP chunk: it refuses profiles over its text-chunk limit (1 MiB) as
            # corrupt; _icc_from_iccp applies MAX_ICC_BYTES (drop with a warning), as for 16-bit PNGs
            with _pillow_without_bomb_check():
                im = Image.open(_WithoutRange(f, *iccp[:2]) if iccp else f)
            im = _one_frame(path, fmt, im)
            array, info = _pillow_image(path, fmt, im, max_pixels)
        except _DECODE_ERRORS as e:
            if str(e).startswith(str(path)):
                raise
            raise _bad(path, f"corrupt or truncated {fmt} file ({e})") from None
    if iccp:
        info["icc_profile"] = _icc_from_iccp(path, iccp[2])
    return array, info


def _one_frame(path: Path, fmt: str, im: Image.Image) -> Image.Image:
    """im, if it holds one image; a file of several (an MPO stereo pair, ...) is refused with the count.
    Like a TIFF's thumbnails, an MPO's smaller images (thumbnails, a reduced gain map) do not count."""
    n = getattr(im, "n_frames", 1)
    if fmt == "JPEG" and n > 1:
        size, sizes = im.size, []
        for k in range(n):
            im.seek(k)
            sizes.append(im.size)
        im.seek(0)
        n = sizes.count(size)
    if n > 1:
        im.close()
        raise _bad(path, f"{fmt} file with {n} frames (images); this reads one image and would lose the others: "
                         "save the frame you want as a separate file")
    return im


def _pillow_image(path: Path, fmt: str, im: Image.Image, max_pixels):
    with im:
        _check_size(path, im.width, im.height, max_pixels)
        try:
            im.load()
        except _DECODE_ERRORS as e:
            raise _bad(path, f"corrupt or truncated {fmt} file ({e})") from None
        exif_bytes = im.info.get("exif")
        exif = _parse_exif(exif_bytes) if exif_bytes else im.getexif()
        if not exif_bytes and len(exif):
            exif_bytes = exif.tobytes()
        icc = im.info.get("icc_profile") or None
        convert = None
        if im.mode in ("CMYK", "YCbCr", "RGBX"):
            icc = icc if im.mode != "CMYK" else None  # a CMYK profile does not describe the RGB pixels
            convert = "RGB"
        elif im.mode in ("P", "PA"):
            convert = "RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB"
        elif im.mode == "1":
            convert = "L"
        array = _pillow_array(path, im, convert)
        info = {"icc_profile": icc, "exif": exif_bytes or None,
                "orientation": _orientation(exif), "dpi": im.info.get("dpi")}
    return array, info


_PILLOW_DTYPES = {"L": np.uint8, "LA": np.uint8, "RGB": np.uint8, "RGBA": np.uint8, "I;16": np.uint16,
                  "I;16L": np.uint16, "I;16B": np.uint16, "I;16N": np.uint16, "I": np.uint16, "F": np.float32}


def _pillow_array(path: Path, im: Image.Image, convert: str | None) -> np.ndarray:
    """The pixels of a loaded image (converted to mode `convert`), copied out one band of rows at a time:
    memory is Pillow's image plus the output (np.array(im) would hold a third copy, its bytes)."""
    mode = convert or im.mode
    if mode not in _PILLOW_DTYPES:
        raise _bad(path, f"unsupported image mode {im.mode!r}")
    channels = len(mode) if mode in ("LA", "RGB", "RGBA") else 1
    out = np.empty((im.height, im.width, channels), _PILLOW_DTYPES[mode])
    band = max(1, _BAND_BYTES // (im.width * channels * 4))
    for y in range(0, im.height, band):
        part = im.crop((0, y, im.width, min(im.height, y + band)))
        a = np.asarray(part.convert(convert) if convert else part)
        if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):  # some decoders widen 16 bits to int32
            raise _bad(path, "32-bit integer samples outside the 16-bit range are not supported")
        out[y:y + len(a)] = a.reshape(len(a), im.width, channels)
    return out[:, :, 0] if channels == 1 else out


def _read_tiff(path: Path, max_pixels, page: int | None):
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return _tiff_page(path, tif, max_pixels, page)
    except Exception as e:  # tifffile raises TiffFileError, ValueError, struct.error, KeyError, ... on bad files
        if isinstance(e, ValueError) and str(e).startswith(str(path)):
            raise  # ours, already naming the problem
        raise _bad(path, f"corrupt TIFF file ({type(e).__name__}: {e})") from None


def _tiff_images(tif) -> list:
    """The images of a TIFF that count: its pages and their SubIFDs (in file order, each page followed by
    its SubIFDs), less thumbnails and pyramid levels: an image flagged reduced (NewSubfileType bit 0) that is
    smaller than the largest image. A full-size image flagged reduced, or one in a SubIFD, counts."""
    found = []

    def walk(pages, depth):
        for p in pages:
            found.append(p)
            if depth < 2 and p.pages:  # SubIFDs (and theirs: a DNG's raw image sits one level down)
                walk(p.pages, depth + 1)

    walk(tif.pages, 0)
    largest = max((p.imagelength * p.imagewidth for p in found), default=0)
    return [p for p in found if not (p.is_reduced and p.imagelength * p.imagewidth < largest)]


def _tiff_page(path: Path, tif, max_pixels, page: int | None):
    pages = _tiff_images(tif)
    if page is None and len(pages) > 1:
        raise _bad(path, f"TIFF with {len(pages)} pages (images, SubIFDs included); this reads one image: pick "
                         f"it with read_image(path, page=K), K = 0..{len(pages) - 1}")
    if not pages or not 0 <= (page or 0) < len(pages):
        raise _bad(path, f"TIFF has no page {page or 0} (it has {len(pages)})")
    page = pages[page or 0]
    height, width, samples = page.imagelength, page.imagewidth, page.samplesperpixel
    _check_size(path, width, height, max_pixels, samples * max(page.dtype.itemsize if page.dtype else 1, 1))
    if page.axes not in ("YX", "YXS", "SYX"):
        raise _bad(path, f"unsupported TIFF layout (axes {page.axes}; expected a 2-D gray or colour image)")
    if int(page.photometric) not in (1, 2):  # MINISBLACK, RGB
        raise _bad(path, f"unsupported TIFF photometric interpretation {int(page.photometric)}")
    try:
        array = page.asarray(buffersize=_BAND_BYTES)  # reads the file in bands too
    except Exception as e:
        raise _bad(path, f"corrupt or truncated TIFF file, or an unsupported compression ({e})") from None
    orientation = page.tags.valueof(274, 1)
    icc = page.tags.valueof(34675)
    resolution = page.tags.valueof(282), page.tags.valueof(283)
    if page.axes == "SYX":
        array = np.moveaxis(array, 0, -1)
    if array.size != height * width * samples:
        raise _bad(path, f"corrupt TIFF file ({array.shape} samples decoded for a {width}x{height}x{samples} image)")
    array = array.reshape((height, width) if samples == 1 else (height, width, samples))  # tifffile squeezes 1s
    if array.ndim == 3 and array.shape[2] > 4:
        raise _bad(path, f"{array.shape[2]} samples per pixel are not supported (at most 4)")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind == "f":
        array = array.astype(np.float32, copy=False)
    elif array.dtype not in (np.uint8, np.uint16):
        raise _bad(path, f"unsupported TIFF sample type {array.dtype} (uint8, uint16 or float only)")
    dpi = None
    if all(isinstance(r, tuple) and len(r) == 2 and r[1] for r in resolution):
        dpi = tuple(r[0] / r[1] for r in resolution)
    info = {"icc_profile": bytes(icc) if isinstance(icc, (bytes, bytearray)) and icc else None, "exif": None,
            "orientation": orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1, "dpi": dpi}
    return array, info


def _png_head(path: Path):
    """Checks the chunks before the image data: an animation (acTL) of several frames is refused with its
    frame count; returns (start, end, body) of the iCCP chunk, or None."""
    iccp = None
    with open(path, "rb") as f:
        pos = len(_PNG_SIGNATURE)
        while True:
            f.seek(pos)
            head = f.read(8)
            if len(head) < 8:
                return iccp  # truncated: the decoder says so
            length, ctype = struct.unpack(">I4s", head)
            if ctype in (b"IDAT", b"IEND"):
                return iccp
            body = f.read(4) if ctype == b"acTL" else b""
            if len(body) == 4:
                frames = struct.unpack(">I", body)[0]
                if frames > 1:
                    raise _bad(path, f"animated PNG with {frames} frames; this reads one image and would lose "
                                     "the others: save the frame you want as a still PNG")
            elif ctype == b"iCCP" and iccp is None:
                body = f.read(length)
                if zlib.crc32(body, zlib.crc32(ctype)) != struct.unpack(">I", f.read(4).rjust(4, b"\0"))[0]:
                    raise _bad(path, "corrupt PNG file (CRC mismatch in a b'iCCP' chunk)")
                iccp = (pos, pos + 12 + length, body)
            pos += 12 + length


class _WithoutRange(io.RawIOBase):
    """A read-only view of a seekable file without the bytes [start, end): a PNG minus one chunk."""

    def __init__(self, f, start: int, end: int):
        super().__init__()
        self._f, self._start, self._cut, self._pos = f, start, end - start, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        size = os.fstat(self._f.fileno()).st_size - self._cut
        self._pos = max(0, {0: 0, 1: self._pos, 2: size}[whence] + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        """Fills buffer up to the end of the file (readers of PNG chunks take a short read as truncation)."""
        view, done = memoryview(buffer), 0
        while done < len(view):
            before = self._pos < self._start
            self._f.seek(self._pos if before else self._pos + self._cut)
            end = len(view) if not before else min(len(view), done + self._start - self._pos)
            n = self._f.readinto(view[done:end])
            if not n:
                break
            done += n
            self._pos += n
        return done


# ---------------------------------------------------------------- the PNG codec for 16-bit samples

def _png_chunks(path: Path, data: bytes):
    """Yields (type, body) of each chunk up to IEND, checking lengths and CRCs."""
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise _bad(path, "truncated PNG file (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        if len(crc) < 4:
            raise _bad(path, f"truncated PNG file (in a {ctype!r} chunk)")
        if zlib.crc32(body, zlib.crc32(ctype)) != struct.unpack(">I", crc)[0]:
            raise _bad(path, f"corrupt PNG file (CRC mismatch in a {ctype!r} chunk)")
        yield ctype, body
        if ctype == b"IEND":
            return
        pos += 12 + length


def _png_header(data: bytes):
    """(width, height, bit depth, colour type, interlace) from the IHDR chunk, or None."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, color, interlace


def _png_needs_own_decoder(path: Path) -> bool:
    with open(path, "rb") as f:
        header = _png_header(f.read(33))
    return header is not None and header[2] == 16 and header[3] in (2, 4, 6)


def _read_png16(path: Path, max_pixels):
    data = path.read_bytes()
    w, h, depth, color, interlace = _png_header(data)
    _check_size(path, w, h, max_pixels)
    if interlace:
        raise _bad(path, "interlaced 16-bit colour PNG is not supported (save it without interlacing)")
    array, info = decode_png(data, path)
    exif = _parse_exif(info["exif"])
    info["orientation"] = _orientation(exif)
    return array, info


def decode_png(data: bytes, path="<bytes>"):
    """Decodes a non-interlaced 8- or 16-bit gray/RGB(A) PNG: (array, {icc_profile, exif, dpi}).

    Streams: the image data is inflated and unfiltered one band of rows at a time, so memory is the output
    plus about _BAND_BYTES (plus the file itself).
    """
    header = _png_header(data)
    if header is None:
        raise _bad(path, "corrupt PNG file (no IHDR chunk)")
    w, h, depth, color, interlace = header
    if depth not in (8, 16) or color not in _PNG_CHANNELS or interlace:
        raise _bad(path, f"PNG with bit depth {depth}, colour type {color}, interlace {interlace} is not "
                         "supported by this decoder")
    idat, icc, exif, dpi = [], None, None, None
    for ctype, body in _png_chunks(path, memoryview(data)):
        if ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"iCCP":
            icc = _icc_from_iccp(path, bytes(body))
        elif ctype == b"eXIf":
            exif = bytes(body)
        elif ctype == b"pHYs" and len(body) == 9 and body[8] == 1:  # pixels per metre
            dpi = tuple(round(v * 0.0254, 4) for v in struct.unpack(">II", body[:8]))
    channels = _PNG_CHANNELS[color]
    bpp = channels * depth // 8
    stride = w * bpp + 1
    out = np.empty((h, w * bpp), np.uint8)
    above = np.zeros(w * bpp, np.uint8)  # the zero row PNG assumes above the image
    band = max(1, _BAND_BYTES // stride)
    stream = _inflate(path, idat)
    for r0 in range(0, h, band):
        rows = np.frombuffer(stream(min(band, h - r0) * stride), np.uint8).reshape(-1, stride)
        if rows[:, 0].max() > 4:
            raise _bad(path, f"corrupt PNG image data (row filter {rows[:, 0].max()})")
        out[r0:r0 + len(rows)] = _unfilter(rows, above, bpp)
        above = out[r0 + len(rows) - 1]
    if depth == 16:
        out = out.view(np.uint16)
        if sys.byteorder == "little":
            out.byteswap(inplace=True)  # PNG samples are big-endian; in place keeps memory at the output
    array = out.reshape(h, w, channels)
    return (array[:, :, 0] if channels == 1 else array), {"icc_profile": icc, "exif": exif, "dpi": dpi}


_BAND_BYTES = 1 << 22  # bytes of rows decoded at a time (PNG rows, Pillow pixels copied out)
MAX_ICC_BYTES = 1 << 24  # an ICC profile larger than this (after inflating) is dropped, with a warning


def _icc_from_iccp(path, body: bytes) -> bytes | None:
    """The profile of an iCCP chunk, inflated to at most MAX_ICC_BYTES (a tiny chunk can expand to GBs)."""
    try:
        d = zlib.decompressobj()
        icc = d.decompress(body.split(b"\0", 1)[1][1:], MAX_ICC_BYTES)
    except (IndexError, zlib.error):
        return None
    if d.unconsumed_tail:
        warnings.warn(f"{path}: ICC profile larger than {MAX_ICC_BYTES} bytes; dropped", stacklevel=4)
        return None
    return icc


def _inflate(path, pieces):
    """read(n) -> the next n bytes of the zlib stream spread over `pieces`; never inflates more than asked."""
    d, chunks = zlib.decompressobj(), iter(pieces)

    def read(n: int) -> bytes:
        parts, have = [], 0
        try:
            while have < n:
                src = d.unconsumed_tail or next(chunks, None)
                if src is None or d.eof:
                    raise _bad(path, "truncated PNG image data")
                part = d.decompress(src, n - have)
                parts.append(part)
                have += len(part)
        except zlib.error as e:
            raise _bad(path, f"corrupt PNG image data ({e})") from None
        return b"".join(parts)
    return read


def _unfilter(rows: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the PNG row filters of rows (n, 1 + width bytes) below the decoded row `above`.

    The five filters act on each byte position within a pixel independently (the left neighbour is bpp
    bytes back), so each of the bpp byte planes is an 8-bit gray PNG stream: Pillow's C unfilter decodes
    it, with `above` prepended as an unfiltered row.
    """
    n, stride = rows.shape
    if (rows[:, 0] == 2).all():  # all "Up" (what encode_png16 writes): a running sum down the columns
        return np.cumsum(rows[:, 1:], axis=0, dtype=np.uint8) + above  # uint8 wraps modulo 256 as PNG does
    width = (stride - 1) // bpp
    out = np.empty((n, stride - 1), np.uint8)
    plane = np.empty((n + 1, width + 1), np.uint8)
    plane[0, 0], plane[1:, 0] = 0, rows[:, 0]
    for k in range(bpp):
        plane[0, 1:] = above[k::bpp]
        plane[1:, 1:] = rows[:, 1 + k::bpp]
        im = Image.frombytes("L", (width, n + 1), zlib.compress(plane.tobytes(), 0), "zip", "L")
        out[:, k::bpp] = np.asarray(im)[1:]
    return out


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def encode_png16(array: np.ndarray, icc: bytes | None = None, exif: bytes | None = None, dpi=None) -> bytes:
    """A 16-bit PNG of a uint16 H x W or H x W x C (C = 1-4) array, with optional iCCP, eXIf, pHYs chunks."""
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(array, dtype=">u2").view(np.uint8).reshape(h, w * channels * 2)
    filtered = rows.copy()
    filtered[1:] -= rows[:-1]  # the "Up" filter (type 2): cheap, vectorized, good on photographs
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), filtered], axis=1)
    compressed = zlib.compress(raw.tobytes(), 6)
    out = [_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))]
    if icc:
        out.append(_png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc)))
    if dpi:
        out.append(_png_chunk(b"pHYs", struct.pack(">IIB", *(round(v / 0.0254) for v in dpi), 1)))
    if exif:
        out.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    step = 1 << 30  # a chunk length must fit in 31 bits
    out += [_png_chunk(b"IDAT", compressed[i:i + step]) for i in range(0, len(compressed), step)]
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


# ---------------------------------------------------------------- writing

def _check_array(path, array) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{path}: expected a numpy array, got {type(array).__name__}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] > 4):
        raise ValueError(f"{path}: expected an H x W or H x W x C (C <= 4) image, got shape {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"{path}: cannot write an empty image of shape {array.shape}")
    if array.dtype not in (np.uint8, np.uint16) and array.dtype.kind != "f":
        raise ValueError(f"{path}: cannot write dtype {array.dtype} (uint8, uint16 or float only)")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{path}: image contains NaN or Inf")
    return array


def write_image(path, array: np.ndarray, info: dict | None = None) -> Path:
    """Writes array in the format of path's extension, atomically (temp file + rename).

    info (from read_image) supplies the ICC profile, EXIF (orientation reset to 1) and dpi.
    """
    path = Path(path)
    fmt = image_format(path)
    if fmt is None:
        raise ValueError(f"{path}: unknown image extension {path.suffix!r} (use one of {sorted(EXTENSIONS)})")
    array = _check_array(path, array)
    info = info or {}
    icc = info.get("icc_profile")
    exif = _exif_upright(info.get("exif"))
    dpi = info.get("dpi")
    has_alpha = array.ndim == 3 and array.shape[2] in (2, 4)
    if fmt in ("JPEG", "BMP"):
        if has_alpha:
            raise ValueError(f"{path}: {fmt} cannot store an alpha channel; write PNG or TIFF instead")
        array = to_uint8(array)
    elif fmt == "PNG" and array.dtype.kind == "f":
        array = from_float(array, np.uint16)  # PNG has no float samples; 16 bits keep the precision
    elif fmt == "TIFF":
        array = array.astype(np.float32, copy=False) if array.dtype.kind == "f" else array

    tmp = path.with_name(temp_name())  # (mkstemp would make it mode 0600)
    try:
        if fmt == "TIFF":
            _write_tiff(tmp, array, icc, dpi)
        elif fmt == "PNG" and array.dtype == np.uint16:
            tmp.write_bytes(encode_png16(array, icc, exif, dpi))
        else:
            kwargs = {"icc_profile": icc} if icc and fmt != "BMP" else {}
            if exif and fmt != "BMP":
                kwargs["exif"] = exif
            if dpi:
                kwargs["dpi"] = tuple(dpi)
            if fmt == "JPEG":
                kwargs["quality"] = 95
            Image.fromarray(array).save(tmp, format=fmt, **kwargs)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


TEMP_GLOB = ".lowlight-*.tmp"


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFF:06x}"


def temp_name() -> str:
    """.lowlight-<pid>-<host>-<random>.tmp: the owner, so that a later start can remove it once the owner is
    gone. Short: the final name may be as long as the file system allows, the temp one must fit too."""
    return f".lowlight-{os.getpid()}-{_host_tag()}-{uuid.uuid4().hex[:8]}.tmp"


def remove_stale_temps(folder: Path) -> list[Path]:
    """Removes the temp files in folder that a process of this host left when it was killed (it is gone);
    those of a live process, of another host (a shared folder) or of an unknown owner are kept."""
    removed = []
    for tmp in Path(folder).glob(TEMP_GLOB):
        parts = tmp.name[len(".lowlight-"):-len(".tmp")].split("-")
        mine = len(parts) == 3 and parts[0].isdigit() and 0 < int(parts[0]) < 1 << 22 and parts[1] == _host_tag()
        if not mine or pid_alive(int(parts[0])):  # (1 << 22: Linux's largest pid)
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:  # another start removed it first
            pass
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process pid (> 0) exists on this host (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        pass
    return True


def _write_tiff(path: Path, array: np.ndarray, icc, dpi) -> None:
    import tifffile

    channels = 1 if array.ndim == 2 else array.shape[2]
    kwargs = {"photometric": "rgb" if channels >= 3 else "minisblack", "compression": "zlib"}
    if channels in (2, 4):
        kwargs["extrasamples"] = ["unassalpha"]
    if icc:
        kwargs["iccprofile"] = icc
    if dpi:
        kwargs.update(resolution=tuple(dpi), resolutionunit="inch")
    tifffile.imwrite(path, array, **kwargs)
