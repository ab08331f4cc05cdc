"""Folder enhancement at full throughput: decoding, the model and encoding overlap, memory stays bounded,
and under torchrun each process takes its share of the files.

    decode   DataLoader worker processes (`workers`), at most 2 images ahead each (shared-memory tensors)
    model    this process (its own threads)
    encode   one writer thread, at most WRITES_AHEAD results waiting (PIL / zlib / libjpeg release the GIL)

Sharding: under `torchrun --nproc-per-node N lowlight enhance ...` (or several nodes) process RANK of
WORLD_SIZE takes every WORLD_SIZE-th file of the sorted plan: no file is done twice, no process group needed.
With `--resume` each finished file goes into the process's manifest `<output>/.lowlight-done.<rank>.jsonl` with
the settings that made it, and the files that a manifest (of any rank, any earlier world size) lists as done
with the same settings, and whose output exists, are skipped.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch

WRITES_AHEAD = 2
MANIFEST_GLOB = ".lowlight-done.*.jsonl"


def shard_of_world() -> tuple[int, int]:
    """(rank, world size) of a torchrun launch, (0, 1) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def done_before(outdir: Path, settings: str) -> set[str]:
    """Outputs that earlier runs' manifests list as done with these settings and that exist."""
    done = set()
    for manifest in outdir.glob(MANIFEST_GLOB):
        for line in manifest.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line torn by a kill
                continue
            if isinstance(row, dict) and row.get("settings") == settings and Path(row.get("dst", "")).is_file():
                done.add(row["dst"])
    return done


class DecodeError(Exception):
    """A file that could not be read, raised in a worker process: it travels as its message."""


class _Decoder(torch.utils.data.Dataset):
    """Item i: (i, image tensor or None, info, DecodeError or None)."""

    def __init__(self, sources: list[Path], read: Callable):
        self.sources, self.read = sources, read

    def __len__(self):
        return len(self.sources)

    def __getitem__(self, i):
        try:
            image, info = self.read(self.sources[i])
        except Exception as e:  # reported by the main process, in order (as text: any exception pickles)
            return i, None, None, DecodeError(str(e) or type(e).__name__)
        return i, torch.from_numpy(np.ascontiguousarray(image)), info, None


def _as_is(item):
    return item


def run(jobs: list[tuple[Path, Path]], read: Callable, enhance: Callable, write: Callable, workers: int,
        on_done: Callable, on_error: Callable) -> None:
    """For each (source, destination): read(source) -> (image, info) in a worker, enhance(image) here,
    write(destination, result, info) in the writer thread; then on_done(source, destination), or
    on_error(source, exception) for a file that failed at any stage. The others carry on."""
    loader = torch.utils.data.DataLoader(_Decoder([s for s, _ in jobs], read), batch_size=None,
                                         num_workers=workers, collate_fn=_as_is,
                                         prefetch_factor=2 if workers else None)
    pending: list[tuple[int, Future]] = []

    def settle(k: int, fut: Future) -> None:
        src, dst = jobs[k]
        try:
            fut.result()
        except Exception as e:
            on_error(src, e)
        else:
            on_done(src, dst)

    with ThreadPoolExecutor(max_workers=1) as writer:
        for i, image, info, error in loader:
            src, dst = jobs[i]
            if error is not None:
                on_error(src, error)
                continue
            try:
                result = enhance(image.numpy())
            except Exception as e:
                on_error(src, e)
                continue
            del image
            pending.append((i, writer.submit(write, dst, result, info)))
            while len(pending) > WRITES_AHEAD:  # bounded memory: wait for the oldest write
                settle(*pending.pop(0))
        for k, fut in pending:
            settle(k, fut)
