"""lowlight_core.video and `lowlight enhance clip.mp4`: clips made here with PyAV (tests/_clips.py), never
committed. Timing, frame count, audio, rotation, corrupt clips, atomic output, bounded memory, no PyAV."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV (the video extra) is in requirements-dev.txt")

from _clips import dark_clip, rotate_mp4, write_clip  # noqa: E402
from lowlight_core.cli import main  # noqa: E402
from lowlight_core.video import enhance_video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "night.mp4"
    frames, _ = dark_clip(frames=24, size=(48, 64), cut=14)
    write_clip(path, frames, rate=24)
    return path


def probe(path):
    """(video: width, height, frames, rate, [pts], rotation, end seconds), [audio packet bytes]."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"size": (v.codec_context.width, v.codec_context.height), "index_frames": v.frames,
                "rate": v.average_rate, "codec": v.codec_context.name}
        audio = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size] if c.streams.audio else []
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        info["pts"] = [float(f.pts * f.time_base) for f in frames]
        info["rotation"] = frames[0].rotation
        info["mean"] = float(np.mean([f.to_ndarray(format="rgb24").mean() for f in frames]))
    return info, audio


def test_clip_keeps_its_frames_timing_size_and_audio(clip, tmp_path):
    out = tmp_path / "out.mp4"
    seen = []
    assert enhance_video(clip, out, device="cpu", progress=lambda done, total: seen.append((done, total))) == 24
    assert seen[-1] == (24, 24) and len(seen) == 24
    a, audio_in = probe(clip)
    b, audio_out = probe(out)
    assert b["size"] == a["size"] == (64, 48)
    assert b["index_frames"] == a["index_frames"] == 24 and len(b["pts"]) == 24
    assert b["rate"] == a["rate"] == 24
    assert b["pts"] == a["pts"]  # every timestamp, so the duration too
    assert audio_in and audio_out == audio_in  # copied packet by packet, untouched
    assert b["codec"] == "h264"
    assert b["mean"] > 2 * a["mean"]  # enhanced
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left


def test_rotation_is_kept_or_turned_upright(clip, tmp_path):
    rotated = tmp_path / "phone.mp4"
    rotated.write_bytes(clip.read_bytes())
    rotate_mp4(rotated, 1)
    a, _ = probe(rotated)
    assert a["rotation"] == -90
    enhance_video(rotated, tmp_path / "same.mp4", device="cpu")  # H.264 in and out: the matrix is carried
    same, _ = probe(tmp_path / "same.mp4")
    assert same["rotation"] == -90 and same["size"] == (64, 48)
    enhance_video(rotated, tmp_path / "other.mkv", device="cpu", codec="mpeg4")  # no template: frames turned
    other, _ = probe(tmp_path / "other.mkv")
    assert other["rotation"] == 0 and other["size"] == (48, 64) and len(other["pts"]) == 24


def corrupt(src: Path, dst: Path, how: str) -> None:
    data = src.read_bytes()
    n = len(data)
    if how == "garbage":
        noise = np.random.default_rng(1).integers(0, 256, n // 6, dtype=np.uint8).tobytes()
        data = data[:n // 2] + noise + data[n // 2 + n // 6:]
    else:
        data = data[:2 * n // 3]
    dst.write_bytes(data)


@pytest.mark.parametrize("container, how", [(".mp4", "garbage"), (".mp4", "cut"), (".mkv", "cut")])
def test_a_corrupt_clip_names_the_frame_and_leaves_nothing(tmp_path, container, how):
    frames, _ = dark_clip(frames=24, size=(48, 64))
    good = tmp_path / f"good{container}"
    write_clip(good, frames, options={"movflags": "faststart"} if container == ".mp4" else None)
    bad = tmp_path / f"bad{container}"
    corrupt(good, bad, how)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=r"bad\.\w+: cannot decode frame \d+"):
        enhance_video(bad, out / f"x{container}", device="cpu")
    assert list(out.iterdir()) == []


def test_cli_enhances_clips_and_resumes(clip, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mov").write_bytes(clip.read_bytes())
    corrupt(clip, folder / "broken.mp4", "garbage")
    out = tmp_path / "out"
    assert main(["enhance", str(folder), "-o", str(out), "--device", "cpu", "--resume", "--quality", "23"]) == 1
    err = capsys.readouterr().err
    assert "broken.mp4: cannot decode frame" in err and "enhanced 1 of 2 files" in err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".lowlight-done")) == ["a.mov"]
    assert len(probe(out / "a.mov")[0]["pts"]) == 24
    (folder / "broken.mp4").unlink()
    assert main(["enhance", str(folder), "-o", str(out), "--device", "cpu", "--resume", "--quality", "23"]) == 0
    assert "1 done before, skipped" in capsys.readouterr().err
    assert main(["enhance", str(clip), "-o", str(out), "--quality", "99"]) == 2
    assert "--quality must be in [0, 51]" in capsys.readouterr().err


# VmHWM, not ru_maxrss: Linux carries the parent's peak into a child's ru_maxrss across fork and exec, so a
# large pytest process would be measured instead of the clip's run
RSS_SCRIPT = textwrap.dedent("""
    import sys
    from lowlight_core.video import enhance_video
    enhance_video(sys.argv[1], sys.argv[2], device="cpu")
    with open("/proc/self/status") as f:
        print(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
""")


def test_memory_stays_bounded_for_a_long_clip(tmp_path):
    """Peak RSS of a 240-frame and a 480-frame 320 x 240 clip (in a fresh interpreter each): the clip streams,
    so the longer one peaks no higher than the shorter one plus a little (keeping its 240 more frames would add
    55 MB). Both are past the warm-up: a 20-frame clip peaks ~20 MB lower, 240, 480 and 720 frames within 1 MB
    of each other (2026-12-07)."""
    rng = np.random.default_rng(0)
    peaks = []
    for n in (240, 480):
        src = tmp_path / f"long{n}.mp4"
        base = (rng.random((240, 320, 3)) * 60).astype(np.uint8)
        with av.open(str(src), "w") as c:
            v = c.add_stream("libx264", rate=25)
            v.width, v.height, v.pix_fmt, v.options = 320, 240, "yuv420p", {"preset": "ultrafast"}
            for i in range(n):
                frame = np.roll(base, i, axis=1)
                for p in v.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    c.mux(p)
            for p in v.encode():
                c.mux(p)
        run = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(src), str(tmp_path / f"out{n}.mp4")],
                             capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "2"})
        assert run.returncode == 0, run.stderr
        peaks.append(int(run.stdout.split()[-1]) / 1024)  # MB (VmHWM is in kB)
    assert peaks[1] - peaks[0] < 15, peaks
    assert peaks[1] < 1024, peaks


def test_without_pyav_the_error_names_the_extra(tmp_path, clip):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["av"] = None  # as if PyAV were not installed
        import lowlight_core.cli, lowlight_core.sequence  # the core imports without it
        from lowlight_core.video import enhance_video
        try:
            enhance_video({str(clip)!r}, {str(tmp_path / 'x.mp4')!r})
        except ImportError as e:
            print(e)
        sys.exit(lowlight_core.cli.main(["enhance", {str(clip)!r}, "-o", {str(tmp_path / 'o')!r}]))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert "napari-lowlight[video]" in run.stdout
    assert run.returncode == 2 and "napari-lowlight[video]" in run.stderr


def test_a_clip_is_written_under_a_temp_name_a_later_run_can_clean(clip, tmp_path, monkeypatch):
    """While a clip is written, its file carries the owner's pid (io.temp_name), so the leftovers of a killed run
    are removed at the next run into that folder (io.remove_stale_temps)."""
    from lowlight_core import io, video

    seen = []
    transcode = video._transcode

    def spy(av, inp, stream, audio, src, tmp, *rest, **kw):
        seen.append(Path(tmp))
        return transcode(av, inp, stream, audio, src, tmp, *rest, **kw)

    monkeypatch.setattr(video, "_transcode", spy)
    enhance_video(clip, tmp_path / "out.mp4", device="cpu")
    assert len(seen) == 1 and seen[0].parent == tmp_path and seen[0].match(io.TEMP_GLOB)
    assert (tmp_path / "out.mp4").is_file() and not seen[0].exists()
