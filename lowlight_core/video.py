"""Video files: `enhance_video(src, dst, ...)` decodes a clip with PyAV (FFmpeg's libraries; the `video` extra),
enhances its frames with `lowlight_core.sequence.enhance_sequence` as they stream through, and encodes them.

- Kept: frame size, every frame's timestamp (so frame rate, frame count and duration), the rotation (display
  matrix) and the colour tags: the output video stream is made from the input's as a template when the output
  codec is the input's (the common H.264 phone clip); with another codec a rotated clip's frames are turned
  upright instead, so that it still plays the same way up.
- Audio streams are copied packet by packet, untouched (subtitle and data streams are left out).
- Output: H.264 in yuv420p by default at constant quality `quality` (CRF), or codec="source" for the input's
  own codec where FFmpeg can encode it. The clip is written to a hidden temporary file beside `dst` and renamed
  at the end: an error, or an interrupt, leaves no partial output.
- A clip that cannot be decoded part-way raises ValueError naming the frame; memory stays bounded whatever the
  length (the frames in the temporal window, the decoder's and the encoder's buffers).
"""
from __future__ import annotations

import numbers
import os
from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np

from .controls import (DEFAULT_MODEL, DENOISE_DEFAULT, EXPOSURE_DEFAULT, ITERATIONS_DEFAULT, TEMPORAL_RADIUS,
                       VIDEO_EXTENSIONS, VIDEO_MUXERS, VIDEO_QUALITY_DEFAULT, VIDEO_QUALITY_RANGE)
from .io import temp_name

DEFAULT_CODEC = "h264"
SOURCE_CODEC = "source"
_CRF_ENCODERS = ("libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1")


def require_av():
    """The `av` module, or ImportError saying how to install it."""
    try:
        import av
    except ImportError:
        raise ImportError("video files need PyAV: pip install 'napari-lowlight[video]' (or pip install av)") from None
    return av


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _check_arguments(src: Path, dst: Path, codec: str, quality) -> None:
    for p, what in ((src, "input"), (dst, "output")):
        if not is_video(p):
            raise ValueError(f"{p}: not a video file name (the {what} must end in one of "
                             f"{', '.join(VIDEO_EXTENSIONS)})")
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file")
    if src.resolve() == dst.resolve():
        raise ValueError(f"refusing to overwrite the input {src} with the output")
    if not isinstance(codec, str) or not codec:
        raise ValueError(f"codec must be an FFmpeg encoder name or {SOURCE_CODEC!r}, got {codec!r}")
    lo, hi = VIDEO_QUALITY_RANGE
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral) or not lo <= quality <= hi:
        raise ValueError(f"quality must be a whole number in [{lo}, {hi}] (CRF: lower is better), got {quality!r}")


def _stated_end(stream) -> float | None:
    """Where the container says the video stream ends, in seconds (its duration, or Matroska's DURATION tag)."""
    if stream.duration is not None and stream.time_base:
        return float((stream.duration + (stream.start_time or 0)) * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (AttributeError, ValueError):
        return None


def _quarter_turns(rotation) -> int:
    """np.rot90's k that turns a frame upright given VideoFrame.rotation (degrees counter-clockwise)."""
    return int(round(float(rotation or 0) / 90)) % 4


def _open_output(av, out, stream, codec: str, quality: int, rotation):
    """The output video stream and the quarter turns to apply to the frames (0 unless the rotation cannot be
    carried as metadata)."""
    in_codec = stream.codec_context.name
    same = codec == SOURCE_CODEC or av.codec.Codec(codec, "w").id == av.codec.Codec(in_codec, "r").id
    if same:
        try:
            s = out.add_stream_from_template(stream)  # a fresh encoder of the input's codec; side data kept
        except (ValueError, av.FFmpegError) as e:
            raise ValueError(f"cannot write the input's codec {in_codec!r} into {out.format.name}: {e}") from None
        turns = 0
    else:
        s = out.add_stream(codec, rate=stream.average_rate or stream.guessed_rate)
        s.codec_context.time_base = stream.time_base
        s.time_base = stream.time_base
        turns = _quarter_turns(rotation)
    w, h = stream.codec_context.width, stream.codec_context.height
    s.width, s.height = (h, w) if turns % 2 else (w, h)
    if codec != SOURCE_CODEC or not s.pix_fmt:
        s.pix_fmt = "yuv420p"
    if s.codec_context.name in _CRF_ENCODERS:
        s.options = {"crf": str(quality)}
    return s, turns


def enhance_video(src, dst, model=DEFAULT_MODEL, iterations: int = ITERATIONS_DEFAULT,
                  exposure=EXPOSURE_DEFAULT, device="auto", tile: int | None = None, weights=None,
                  denoise=DENOISE_DEFAULT, temporal: bool = True, radius: int = TEMPORAL_RADIUS,
                  codec: str = DEFAULT_CODEC, quality: int = VIDEO_QUALITY_DEFAULT,
                  progress: Callable[[int, int | None], None] | None = None) -> int:
    """Enhance the clip `src` into `dst` (see the module docstring); returns the number of frames written.

    The controls are enhance_sequence's. codec: an FFmpeg encoder name (default 'h264') or 'source'; quality:
    CRF for encoders that take one (libx264/x265, VP9, AV1). progress(frames done, frames expected or None) is
    called after each frame written."""
    from .sequence import enhance_sequence

    av = require_av()
    src, dst = Path(src), Path(dst)
    _check_arguments(src, dst, codec, quality)
    try:
        inp = av.open(str(src))
    except av.FFmpegError as e:
        raise ValueError(f"{src}: cannot open the clip: {e}") from None
    with inp:
        if not inp.streams.video:
            raise ValueError(f"{src}: no video stream")
        stream = inp.streams.video[0]
        audio = list(inp.streams.audio)
        expected = stream.frames or None
        deep = stream.format is not None and any(b in stream.format.name for b in ("10", "12", "16"))
        pix = "rgb48le" if deep else "rgb24"
        # named with its owner's pid (io.temp_name): a run killed mid-clip leaves a file the next run removes
        tmp = str(dst.with_name(temp_name()))
        try:
            n = _transcode(av, inp, stream, audio, src, tmp, VIDEO_MUXERS[dst.suffix.lower()], pix, expected, codec,
                           quality, progress,
                           lambda frames: enhance_sequence(frames, model=model, iterations=iterations,
                                                           exposure=exposure, device=device, tile=tile,
                                                           weights=weights, denoise=denoise, temporal=temporal,
                                                           radius=radius))
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return n


def _transcode(av, inp, stream, audio, src, tmp, muxer, pix, expected, codec, quality, progress,
               enhance_frames) -> int:
    """Decode, enhance_frames(iterator of arrays) -> iterator of arrays, encode into tmp (FFmpeg muxer `muxer`);
    returns the frames written."""
    timing: deque = deque()  # (pts, time_base) of decoded frames not yet encoded
    pending: deque = deque()  # decoded frames not yet handed on
    held: list = []           # audio packets read before the video stream could be added
    decoded_count = 0
    video_packets = 0         # read from the file (an AVI's empty "drop" packets too: they repeat a frame)
    with av.open(tmp, "w", format=muxer) as out:
        outs = {a.index: out.add_stream_from_template(a) for a in audio}
        packets = inp.demux(stream, *audio)

        def next_frame():
            """The next decoded video frame (muxing the audio packets read on the way), or None at the end."""
            nonlocal video_packets
            for packet in packets:
                if packet.stream.type == "audio":
                    if packet.dts is not None:
                        packet.stream = outs[packet.stream.index]
                        if started:
                            out.mux(packet)
                        else:
                            held.append(packet)
                    continue
                if packet.dts is not None:
                    video_packets += 1
                try:
                    pending.extend(packet.decode())
                except av.FFmpegError as e:
                    raise ValueError(f"{src}: cannot decode frame {decoded_count + len(pending)}: {e}") from None
                if pending:
                    return pending.popleft()
            return pending.popleft() if pending else None

        started = False
        first = next_frame()
        if first is None:
            raise ValueError(f"{src}: the video stream has no frames")
        vs, turns = _open_output(av, out, stream, codec, quality, first.rotation)
        started = True
        for packet in held:
            out.mux(packet)

        last_time = None

        def decoded():
            frame = first
            nonlocal decoded_count, last_time
            while frame is not None:
                timing.append((frame.pts, frame.time_base))
                if frame.pts is not None and frame.time_base:
                    last_time = float(frame.pts * frame.time_base)
                decoded_count += 1
                a = frame.to_ndarray(format=pix)
                yield np.rot90(a, turns) if turns else a
                frame = next_frame()

        written = 0
        for y in enhance_frames(decoded()):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(y), format=pix)
            f.pts, f.time_base = timing.popleft()
            for p in vs.encode(f):
                out.mux(p)
            written += 1
            if progress:
                progress(written, expected)
        for p in vs.encode():
            out.mux(p)
        if expected and written < expected and video_packets < expected:
            raise ValueError(f"{src}: cannot decode frame {written}: the clip ends there but its index lists "
                             f"{expected} frames (truncated or corrupt)")
        # without a frame count (Matroska, WebM, AVI): the stated duration tells a clip cut short
        interval = 1 / float(stream.average_rate or stream.guessed_rate or 25)
        end = _stated_end(stream)
        if not expected and end is not None and last_time is not None and last_time + interval < end - 2 * interval:
            raise ValueError(f"{src}: cannot decode frame {written}: the clip ends at {last_time + interval:.3f} s "
                             f"but its header says {end:.3f} s (truncated or corrupt)")
    return written
