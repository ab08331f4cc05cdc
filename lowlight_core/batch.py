"""Folder enhancement at full throughput: decoding, the model and encoding overlap, memory stays bounded,
and under torchrun each process takes its share of the files.

    decode   `workers` reader threads, at most READS_AHEAD images each decoded ahead (PIL's decoders release
             the GIL; threads, not processes: handing a 36 MB decoded 12 MP photo from a worker process to this
             one through shared memory cost more than the overlap won: 200 12 MP JPEGs on 2 idle cores,
             DataLoader processes 30.9 s vs 21.1 s one file after another)
    model    this thread (torch's own intra-op threads)
    encode   one writer thread, at most WRITES_AHEAD results waiting (PIL / zlib / libjpeg release the GIL)

Sharding: under `torchrun --nproc-per-node N lowlight enhance ...` (or several nodes) process RANK of
WORLD_SIZE takes every WORLD_SIZE-th file of the sorted plan: no file is done twice, no process group needed.
Each finished file goes into the process's manifest `<output>/.lowlight-done.<rank>.jsonl` with the settings
that made it (every run, not only with --resume: the manifest is how a later run tells earlier outputs from
inputs when they share a folder). With `--resume` the files that a manifest (of any rank, any earlier world
size) lists as done with the same settings, and whose output exists, are skipped.
"""
from __future__ import annotations

import itertools
import json
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

READS_AHEAD = 2
WRITES_AHEAD = 2
MANIFEST_GLOB = ".lowlight-done.*.jsonl"


def shard_of_world() -> tuple[int, int]:
    """(rank, world size) of a torchrun launch, (0, 1) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def manifest_rows(manifest: Path) -> Iterator[tuple[dict, Path]]:
    """(row, the output's resolved path) of each readable line of a manifest."""
    try:  # a regular file only: a link to a device (/dev/zero) would never end
        text = manifest.read_text(errors="replace") if manifest.is_file() else ""
    except OSError:
        return
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line torn by a kill or a full disk
            continue
        if isinstance(row, dict) and isinstance(row.get("out"), str):  # relative to the manifest's folder
            yield row, (manifest.parent / row["out"]).resolve()
        elif isinstance(row, dict) and isinstance(row.get("dst"), str):  # older manifests: as given then
            yield row, Path(row["dst"]).resolve()


def done_before(outdir: Path, settings: str) -> set[Path]:
    """Outputs (resolved) that earlier runs' manifests list as done with these settings and that exist."""
    return {out for manifest in outdir.glob(MANIFEST_GLOB) for row, out in manifest_rows(manifest)
            if row.get("settings") == settings and out.is_file()}


class Manifest:
    """The process's manifest: one line per finished file, each written by one unbuffered append, so a
    failed write (a full disk) raises for that file alone and leaves nothing buffered to fail again later."""

    def __init__(self, outdir: Path, rank: int):
        self.outdir, self.path = outdir, outdir / MANIFEST_GLOB.replace("*", str(rank))
        self._file = None  # opened by the first file done: a run that writes nothing leaves nothing
        self._torn = False  # a write failed part-way: the next line starts on a fresh one

    def add(self, src: Path, dst: Path, settings: str) -> None:
        row = {"src": str(src), "dst": str(dst), "out": dst.relative_to(self.outdir).as_posix(),
               "settings": settings}
        line = ("\n" if self._torn else "") + json.dumps(row) + "\n"
        if self._file is None:
            self._file = open(self.path, "ab", buffering=0)
        self._torn = True
        data = memoryview(line.encode())
        while data:  # a write may be short (the disk filled part-way): the next one raises
            data = data[self._file.write(data):]
        self._torn = False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _decoded(sources: list[Path], read: Callable, workers: int) -> Iterator:
    """(image, info, None) or (None, None, exception) for each source, in order; with workers > 0 the reads
    run in that many threads, at most workers * READS_AHEAD ahead of the consumer."""
    if workers == 0:
        for src in sources:
            try:
                yield (*read(src), None)
            except Exception as e:
                yield None, None, e
        return
    with ThreadPoolExecutor(max_workers=workers) as readers:
        ahead: deque[Future] = deque()
        todo = iter(sources)
        for src in itertools.islice(todo, workers * READS_AHEAD):
            ahead.append(readers.submit(read, src))
        while ahead:
            fut = ahead.popleft()
            for src in itertools.islice(todo, 1):
                ahead.append(readers.submit(read, src))
            try:
                image, info = fut.result()
            except Exception as e:
                yield None, None, e
            else:
                yield image, info, None


def run(jobs: list[tuple[Path, Path]], read: Callable, enhance: Callable, write: Callable, workers: int,
        on_done: Callable, on_error: Callable) -> None:
    """For each (source, destination): read(source) -> (image, info) in a reader thread, enhance(image) here,
    write(destination, result, info) in the writer thread; then on_done(source, destination), or
    on_error(source, exception) for a file that failed at any stage. The others carry on."""
    pending: deque[tuple[int, Future]] = deque()

    def settle(k: int, fut: Future) -> None:
        src, dst = jobs[k]
        try:
            fut.result()
        except Exception as e:
            on_error(src, e)
        else:
            on_done(src, dst)

    with ThreadPoolExecutor(max_workers=1) as writer:
        for i, (image, info, error) in enumerate(_decoded([s for s, _ in jobs], read, workers)):
            src, dst = jobs[i]
            if error is not None:
                on_error(src, error)
                continue
            try:
                result = enhance(image)
            except Exception as e:
                on_error(src, e)
                continue
            del image
            pending.append((i, writer.submit(write, dst, result, info)))
            del result
            while len(pending) > WRITES_AHEAD:  # bounded memory: wait for the oldest write
                settle(*pending.popleft())
        for k, fut in pending:
            settle(k, fut)
