"""One trainer for every recipe.

What is model-specific lives in a *task* object (training.tasks.base.TrainTask): its modules, optimizers, the
body of one training step, validation and the rows of the image grid. The trainer owns everything else: seeding,
device and AMP, the update (backward, gradient-norm clip, optimizer step), the progress bar, CSV logs,
validation every N steps, atomic and resumable checkpoints, the loss plot and the before/after grid.

A paired or GAN recipe plugs in the same way: its train_step calls `update(loss, "g")` and
`update(loss_d, "d")` for its two optimizers.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lowlight_core.controls import EXPOSURE_GRID

from . import data as data_mod
from . import distributed, plots
from .tasks.base import TrainTask

CHECKPOINT_VERSION = 1
PAUSE_AFTER_CKPT_ENV = "LOWLIGHT_TRAIN_PAUSE_AFTER_CKPT"  # test hook: sleep N s after each checkpoint


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read back (truncated, corrupt, or from another recipe)."""


@dataclass
class TrainerConfig:
    steps: int
    seed: int = 0
    val_every: int = 250
    ckpt_every: int = 100
    grad_clip: float | None = 0.1  # max gradient norm (official Zero-DCE: 0.1); None: no clipping
    device: str = "auto"  # "auto": CUDA when present, else CPU
    amp: bool = True  # mixed precision (float16 autocast + GradScaler); CUDA only
    workers: int = 1  # background processes decoding images
    lr_final_factor: float | None = None  # cosine decay of every lr to this factor at the last step
    grid_exposures: tuple[float, ...] = EXPOSURE_GRID
    grid_images: int = 4


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ---------------------------------------------------------------- checkpoints

def content_hash(obj) -> str:
    """SHA-256 of a checkpoint's content: every tensor's bytes, dtype and shape, every plain value, in key
    order (tuples and lists alike: torch.load returns some tuples as lists)."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=repr):
                h.update(repr(k).encode())
                feed(v[k])
            h.update(b"}")
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for x in v:
                feed(x)
            h.update(b"]")
        elif isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous().reshape(-1)
            h.update(f"{t.dtype}{tuple(v.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(v).encode())
    feed(obj)
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """torch.save to a temp file in the same folder, fsync, then os.replace: a reader (or a kill at any
    moment) sees either the old complete file or the new complete file, never a partial one. The file
    carries the content hash of `state` (key "sha256"), checked by load_checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {**state, "sha256": content_hash({k: v for k, v in state.items() if k != "sha256"})}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by save_checkpoint; CheckpointError with the reason if it is damaged."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises RuntimeError / zipfile / pickle errors for damaged files
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {e}); "
            f"delete it to start over, or restore a good copy") from e
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION or "step" not in state:
        raise CheckpointError(f"checkpoint {path} is not a lowlight training checkpoint (version "
                              f"{CHECKPOINT_VERSION})")
    stored = state.pop("sha256", None)  # absent in checkpoints written before the hash existed
    if stored is not None and stored != content_hash(state):
        raise CheckpointError(f"checkpoint {path} is corrupt: its content does not match its SHA-256 "
                              f"(flipped bytes on disk?); delete it to start over, or restore a good copy")
    return state


def remove_stale_temps(path: Path) -> list[Path]:
    """Deletes the temp files of save_checkpoint(path) left by processes that died while saving."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rpartition("-")[2]
        try:
            os.kill(int(pid), 0)  # still running: its save may be in progress
            continue
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:  # someone else's live process
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _plain(v):
    """Tuples as lists, recursively: what a value looks like after a torch.load round trip."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _differences(old, new, prefix="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k, "<none>"), new.get(k, "<none>"), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix[:-1]}: checkpoint {old!r}, now {new!r}"]


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(v):
    """torch.load turns the tuples of random.getstate() into lists; random.setstate needs tuples."""
    return tuple(_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- CSV logs

class CsvLog:
    """Append-only CSV whose columns are fixed by the first row; rows past a step can be dropped on resume."""

    def __init__(self, path: Path):
        self.path = path
        self.fields = None
        if path.is_file() and path.stat().st_size:
            with open(path, newline="") as f:
                self.fields = next(csv.reader(f), None)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after the checkpoint we resume from (a killed run wrote them, a resumed run
        will write them again), and torn rows (a kill in the middle of a write)."""
        if not self.fields:
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if _complete(r) and int(r["step"]) <= step]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, self.fields)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, row: dict) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: _fmt(row.get(k, "")) for k in self.fields})


def _complete(row: dict) -> bool:
    if None in row or None in row.values():  # too many or too few cells
        return False
    try:
        int(row["step"])
    except (KeyError, ValueError):
        return False
    return True


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


# ---------------------------------------------------------------- the trainer

class Trainer:
    def __init__(self, task: TrainTask, train_data: torch.utils.data.Dataset, val_images: list[torch.Tensor],
                 config: TrainerConfig, out_dir: str | os.PathLike, run_info: dict | None = None):
        # train_data: one batch per item, made for this process only after set_shard(world) (training.data)
        self.task, self.train_data, self.val_images = task, train_data, val_images
        self.cfg, self.out = config, Path(out_dir)
        self.run_info = run_info or {}
        self.world = distributed.current()  # rank 0 writes; see training.distributed
        self.device = resolve_device(config.device)
        self.amp = config.amp and self.device.type == "cuda"
        self.ckpt_path = self.out / "checkpoint.pt"
        self.train_log = CsvLog(self.out / "train.csv")
        self.val_log = CsvLog(self.out / "val.csv")
        self.step = 0
        self.elapsed = 0.0  # training seconds summed over every resumed piece of the run
        for m in task.modules.values():
            m.to(self.device)
        self.optimizers = task.make_optimizers()
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    # ---- pieces a task calls
    def update(self, loss: torch.Tensor, name: str = "model") -> float:
        """Backward, clip the gradient norm of this optimizer's parameters, optimizer step."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=False):  # backward outside autocast
            self.scaler.scale(loss).backward()
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        distributed.average_gradients(params, self.world)  # (still scaled: the average is linear)
        self.scaler.unscale_(opt)
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.scaler.step(opt)
        return float(norm)

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.float16)

    def set_lr(self) -> None:
        """Learning rate of the coming step: a pure function of the step, so resuming needs no state."""
        f = self.cfg.lr_final_factor
        if f is None:
            return
        t = min(self.step / max(self.cfg.steps - 1, 1), 1.0)
        scale = f + (1 - f) * 0.5 * (1 + math.cos(math.pi * t))
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * scale

    # ---- checkpoints
    def state_dict(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "elapsed": self.elapsed,
            "modules": {k: m.state_dict() for k, m in self.task.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.cfg).items()},
            "run_info": self.run_info,
        }

    def save(self) -> None:
        save_checkpoint(self.ckpt_path, self.state_dict())

    def _starting_state(self, resume: bool) -> dict | None:
        """The checkpoint to continue (on the CPU: it may be sent to other processes), or None for step 0."""
        if self.ckpt_path.exists():
            if not resume:
                raise FileExistsError(f"{self.ckpt_path} exists: pass --resume to continue that run, or choose "
                                      f"another --out")
            return load_checkpoint(self.ckpt_path, map_location="cpu")
        if resume:
            raise CheckpointError(f"--resume: there is no checkpoint {self.ckpt_path} to continue; drop --resume "
                                  f"to start this run from step 0")
        return None

    def restore(self, state: dict, path) -> None:
        """Checks that `state` (a checkpoint read from `path`) fits this run, then takes it."""
        stored = _plain(state.get("run_info", {}))  # what it recorded (older checkpoints: recipe and config only)
        changed = _differences(stored, {k: v for k, v in _plain(self.run_info).items() if k in stored})
        if changed:
            raise CheckpointError(f"checkpoint {path} was made with other settings ({'; '.join(changed)}); "
                                  f"resume with the same ones, or start a new run with another --out")
        if set(state["modules"]) != set(self.task.modules) or set(state["optimizers"]) != set(self.optimizers):
            raise CheckpointError(f"checkpoint {path} holds modules {sorted(state['modules'])}, "
                                  f"this recipe has {sorted(self.task.modules)}")
        try:
            for k, m in self.task.modules.items():
                m.load_state_dict(state["modules"][k])
            for k, o in self.optimizers.items():
                o.load_state_dict(state["optimizers"][k])
        except (RuntimeError, ValueError, KeyError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"checkpoint {path} does not fit this recipe's model ({reason})") from None
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state({k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in state["rng"].items()})
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])

    # ---- the loop
    def run(self, resume: bool = False) -> dict[str, float]:
        """Train up to cfg.steps; returns the last validation numbers."""
        seed_everything(self.cfg.seed)
        main = self.world.main
        # rank 0 reads the checkpoint and hands it (or the reason it cannot) to every process: no shared folder
        # needed, and a resumed run may have another process count
        state, error = None, None
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.ckpt_path)
            try:
                state = self._starting_state(resume)
            except (FileExistsError, CheckpointError) as e:
                error = e
        state, error = distributed.broadcast((state, error), self.world)
        if error is not None:
            raise error
        if state is not None:
            self.restore(state, self.ckpt_path)
        elif self.world.size > 1:  # a fresh run: every process starts from rank 0's initial weights
            weights = distributed.broadcast({k: m.state_dict() for k, m in self.task.modules.items()}
                                            if main else None, self.world)
            for k, m in self.task.modules.items():
                m.load_state_dict(weights[k])
        self.train_data.set_shard(self.world)  # each process makes and trains on its part of every batch
        self.task.set_shard(self.world)
        if main:  # rows past the checkpoint (or all rows of a run killed before its first checkpoint) are stale
            self.train_log.truncate_after(self.step)
            self.val_log.truncate_after(self.step)
        for m in self.task.modules.values():
            m.train()
        interactive = sys.stderr.isatty()
        bar = tqdm(total=self.cfg.steps, initial=self.step, dynamic_ncols=True, mininterval=0.5 if interactive else 30,
                   file=sys.stderr, desc=self.run_info.get("recipe", "train"), disable=not main)
        val = {}
        loader = data_mod.batch_loader(self.train_data, self.step, self.cfg.steps, self.cfg.workers)
        t_last = time.perf_counter()
        for batch in loader:
            gen = data_mod.step_generator(self.cfg.seed, self.step, stream=1)
            batch = batch.to(self.device, non_blocking=True)
            self.set_lr()
            with self.autocast():
                terms = distributed.average_numbers(self.task.train_step(batch, gen, self.update), self.world)
            self.scaler.update()
            self.step += 1
            now = time.perf_counter()
            dt, t_last = now - t_last, now
            self.elapsed += dt
            bar.update(1)
            if not main:  # validation, logs and checkpoints: rank 0
                continue
            lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
            self.train_log.write({"step": self.step, "seconds": round(self.elapsed, 2), "step_s": dt, "lr": lr,
                                  **terms})
            bar.set_postfix({k: f"{v:.4g}" for k, v in list(terms.items())[:4]}, refresh=False)
            last = self.step == self.cfg.steps
            if self.step % self.cfg.val_every == 0 or last:
                val = self.validate()
                bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
                t_last = time.perf_counter()  # validation time is not training time
            if self.step % self.cfg.ckpt_every == 0 or last:
                self.save()
                t_last = time.perf_counter()
                if os.environ.get(PAUSE_AFTER_CKPT_ENV):  # gives a test time to kill the process here
                    time.sleep(float(os.environ[PAUSE_AFTER_CKPT_ENV]))
                    t_last = time.perf_counter()
        bar.close()
        distributed.barrier(self.world)  # the others wait for rank 0's last checkpoint
        if not main:
            return {}
        if not val:  # resumed an already finished run
            val = self.validate()
        self.write_figures()
        return val

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        for m in self.task.modules.values():
            m.eval()
        try:
            val = self.task.validate([x.to(self.device) for x in self.val_images])
        finally:
            for m in self.task.modules.values():
                m.train()
        self.val_log.write({"step": self.step, **val})
        return val

    @torch.no_grad()
    def write_figures(self) -> None:
        """losses.png from the CSV logs and grid.png: validation images before / after at each grid E."""
        plots.plot_losses(self.out / "train.csv", self.out / "val.csv", self.out / "losses.png")
        self.grid(self.out / "grid.png")

    @torch.no_grad()
    def grid(self, path, max_bytes: int | None = None) -> None:
        for m in self.task.modules.values():
            m.eval()
        rows = []
        for x in self.val_images[: self.cfg.grid_images]:
            x = x.to(self.device)
            rows.append(self.task.grid_row(x, self.cfg.grid_exposures))
        plots.image_grid(rows, self.task.grid_labels(self.cfg.grid_exposures), path, max_bytes=max_bytes)
        for m in self.task.modules.values():
            m.train()
