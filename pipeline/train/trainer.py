"""The training loop both stages share: DDP, bf16 autocast, accumulation, AdamW, warmup + cosine,
metrics (pipeline.train.logs), a progress bar on rank 0, checkpoints every N steps and on SIGTERM, exact resume.

A stage supplies a `Task`: the trainable module, a loss on one batch, and a
validation pass. The loop owns everything else.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from degradations import derive_seed
from pipeline.train import checkpoint
from pipeline.train.config import dump
from pipeline.train.distributed import DistEnv, barrier
from pipeline.train.logs import RunLog
from shards import output_folder

LAST = "last.pt"


class Task(Protocol):
    model: nn.Module

    def loss(
        self, model: nn.Module, batch: Mapping[str, Any], rng: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch through `model` (the DDP wrapper when distributed), and scalars to log.

        `rng` (CPU) is seeded by (seed, rank, step, micro-step): draws from it do not depend
        on loader workers, and a resumed run makes the same draws again.
        """

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Metrics on the validation split, computed on rank 0 with the unwrapped model ({} without one).

        A task may also define `examples(model) -> N x 3 x H x W tensor` (before / after images),
        which the log shows beside each validation, and `on_epoch(model, epoch)`, which every rank
        calls with the unwrapped model before the first batch of each epoch (a probe measurement)."""


class Batches(Protocol):
    """What the loop needs of a loader: epochs of batches, and a position to save and restore."""

    def __iter__(self) -> Iterator[Mapping[str, Any]]: ...
    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class Schedule:
    steps: int
    lr: float
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0

    def factor(self, step: int) -> float:
        """Linear warmup to 1, then cosine decay to `min_lr_ratio` at `steps`."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _move(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class _EpochStream:
    """Endless batches: a new epoch starts when the loader's epoch ends. Counts the epoch for resume,
    and calls `on_epoch(epoch)` before the first batch of each epoch (and of a resumed one)."""

    def __init__(self, loader: Batches, epoch: int, restored: bool, on_epoch: Callable[[int], None] | None = None) -> None:
        self.loader, self.epoch, self.on_epoch = loader, epoch, on_epoch
        if not restored:  # a restored loader is mid-epoch already
            loader.set_epoch(epoch)
        self._it = iter(loader)
        self._started = False

    def next(self) -> Mapping[str, Any]:
        if not self._started and self.on_epoch:
            self.on_epoch(self.epoch)
        self._started = True
        for _ in range(2):
            try:
                return next(self._it)
            except StopIteration:
                self.epoch += 1
                self.loader.set_epoch(self.epoch)
                self._it = iter(self.loader)
                if self.on_epoch:
                    self.on_epoch(self.epoch)
        raise RuntimeError("the training loader yields no batches: the split is smaller than one batch per rank")


class TrainingStopped(Exception):
    """SIGTERM ended training before its last step: the checkpoint is saved, nothing is exported."""


class _StopOnSigterm:
    """SIGTERM asks for a checkpoint and a clean stop at the next step boundary (all ranks agree)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopOnSigterm:
        with contextlib.suppress(ValueError):  # not the main thread: no handler, no harm
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def agreed(self, device: torch.device) -> bool:
        if not dist.is_initialized():
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def fit(
    task: Task,
    loader: Batches,
    config: Mapping[str, Any],
    env: DistEnv,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train `task.model` for config["optim"]["steps"] optimiser steps; returns the last metrics.

    config["run"]["out"] receives `last.pt` (written every checkpoint_every
    steps, at the end and on SIGTERM), `config.yaml` and the logs (see
    pipeline.train.logs). The task's validation runs every eval_every steps
    and at the end.
    """
    return _Run(task, loader, config, env, log).fit()


class _Run:
    """One training run, step by step: set-up, resume, optimiser steps, logging, validation, checkpoints."""

    def __init__(self, task: Task, loader: Batches, config: Mapping[str, Any], env: DistEnv, log: Callable[[str], None]) -> None:
        optim_cfg, self.run_cfg = config["optim"], config["run"]
        self.task, self.loader, self.config, self.env, self.log = task, loader, config, env, log
        self.out = Path(self.run_cfg["out"])
        self.model = task.model.to(env.device)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not self.trainable:
            raise ValueError("the model has no trainable parameters")
        self.wrapped: nn.Module = self.model
        if env.world_size > 1:
            self.wrapped = DistributedDataParallel(self.model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(self.trainable, lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"], betas=(0.9, 0.999))
        self.schedule = Schedule(optim_cfg["steps"], optim_cfg["lr"], optim_cfg["warmup_steps"], optim_cfg.get("min_lr_ratio", 0.0))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule.factor)
        self.accum = int(optim_cfg["grad_accum"])
        self.clip_grad = optim_cfg.get("clip_grad")
        self.bf16 = bool(self.run_cfg["bf16"]) and env.device.type == "cuda"
        self.step = 0
        self.last: dict[str, Any] = {}
        self.wait = self.compute = 0.0  # seconds waiting for batches, and computing on them

    def fit(self) -> dict[str, Any]:
        restored, epoch = self.resume()
        on_epoch = getattr(self.task, "on_epoch", None)
        stream = _EpochStream(self.loader, epoch, restored, on_epoch and (lambda e: self._on_epoch(on_epoch, e)))
        if self.env.is_main:
            output_folder(self.out, "run folder (run.out)")
            dump(self.config, self.out / "config.yaml")
        metrics = RunLog(self.out, self.step if restored else None) if self.env.is_main else None
        bar = _progress(self.step, self.schedule.steps, self.env.is_main)
        validated_at = -1
        try:
            with _StopOnSigterm() as stop:
                while self.step < self.schedule.steps:
                    logged = self.train_step(stream)
                    self.record(logged, stream.epoch, metrics, bar)
                    if self.run_cfg.get("eval_every") and self.step % self.run_cfg["eval_every"] == 0:
                        self.last.update(self.validate(metrics))
                        validated_at = self.step
                    stopping = stop.agreed(self.env.device)
                    if self.step % self.run_cfg["checkpoint_every"] == 0 or stopping or self.step == self.schedule.steps:
                        self.save()
                    if stopping and self.step < self.schedule.steps:  # a stop on the last step is a finished run
                        raise TrainingStopped(
                            f"stopped by SIGTERM at step {self.step} of {self.schedule.steps}: saved {self.out / LAST}; "
                            "no model exported; rerun with run.resume=true to continue"
                        )
                if validated_at != self.step:  # the final validation, logged like the others
                    self.last.update(self.validate(metrics))
        finally:
            if bar:
                bar.close()
            if metrics:
                metrics.close()
        return self.last

    def _on_epoch(self, hook: Callable[[nn.Module, int], None], epoch: int) -> None:
        self.model.eval()
        with torch.no_grad(), torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            hook(self.model, epoch)
        self.model.train()

    def resume(self) -> tuple[bool, int]:
        """Restore everything from OUT/last.pt when run.resume asks for it; (restored, epoch)."""
        candidates = [p for p in (self.out / LAST, self.out / checkpoint.PREVIOUS) if p.is_file()]
        if not (self.run_cfg.get("resume") and candidates):
            return False, 0
        applied = _resume_changes(self.out / "config.yaml", self.config)
        state, used = self._load_newest_good(candidates)
        if applied:
            self.log("resuming with changed settings: " + "; ".join(applied))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        checkpoint.set_rng_state(state["rng"])
        self.loader.load_state_dict(state["loader"])
        self.log(f"resumed from {used} at step {self.step}")
        return True, int(state["loader"].get("epoch", 0))

    def _load_newest_good(self, candidates: list[Path]) -> tuple[dict[str, Any], Path]:
        """The first of `candidates` that verifies and loads; a damaged last.pt falls back to previous.pt."""
        damaged = []
        for path in candidates:
            try:
                return checkpoint.load(path, self.env.device), path
            except checkpoint.CheckpointDamaged as err:
                damaged.append(str(err))
                if path.name == LAST:
                    self.log(f"{err}; trying the previous checkpoint")
        raise checkpoint.CheckpointDamaged("no checkpoint to resume from: " + "; ".join(damaged))

    def train_step(self, stream: _EpochStream) -> dict[str, float]:
        """One optimiser step over `accum` micro-batches; the mean of each logged term."""
        env = self.env
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        logged: dict[str, float] = {}
        for micro in range(self.accum):
            t0 = time.perf_counter()
            batch = _move(stream.next(), env.device)
            finish = getattr(stream.loader, "finish", None)
            if finish is not None:  # synth mode on the device: the batch is degraded here, after collation
                batch = finish(batch, env.device)
            t1 = time.perf_counter()
            sync = micro == self.accum - 1 or env.world_size == 1
            rng = torch.Generator().manual_seed(derive_seed(int(self.config["seed"]), "step", env.rank, self.step, micro))
            with (contextlib.nullcontext() if sync else self.wrapped.no_sync()), torch.autocast(
                env.device.type, dtype=torch.bfloat16, enabled=self.bf16
            ):
                loss, terms = self.task.loss(self.wrapped, batch, rng)
            (loss / self.accum).backward()
            self.wait += t1 - t0
            self.compute += time.perf_counter() - t1
            for k, v in {"loss": float(loss.detach()), **terms}.items():
                logged[k] = logged.get(k, 0.0) + v / self.accum
        if not _all_finite(logged, env.device):
            raise FloatingPointError(f"non-finite loss at step {self.step + 1} (on some rank): {logged}")
        if self.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.clip_grad)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return logged

    def record(self, logged: dict[str, float], epoch: int, metrics: RunLog | None, bar: Any) -> None:
        """Log the step's terms (every log_every steps and the last) and move the bar."""
        self.last = {"step": self.step, "epoch": epoch, "lr": self.scheduler.get_last_lr()[0], **logged}
        if metrics and (self.step % self.run_cfg["log_every"] == 0 or self.step == self.schedule.steps):
            self.last["data_wait_fraction"] = self.wait / max(self.wait + self.compute, 1e-9)
            metrics.row("train", self.last)
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.4f}")

    def validate(self, metrics: RunLog | None) -> dict[str, float]:
        """The task's validation on rank 0 (the others wait at the barrier), logged with a few
        before / after images when the task shows some."""
        result: dict[str, float] = {}
        if self.env.is_main:
            self.model.eval()
            with torch.no_grad():
                result = self.task.validate(self.model)
                examples = self.task.examples(self.model) if result and hasattr(self.task, "examples") else None
            if metrics and result:
                metrics.row("val", {"step": self.step, **result})
                if examples is not None:
                    metrics.images("val/before_after", examples, self.step)
        barrier()
        return result

    def save(self) -> None:
        if self.env.is_main:
            state = {
                # Everything, frozen towers included: random ones cannot be re-created, and
                # pretrained ones then need no hub at resume or evaluation time.
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "rng": checkpoint.rng_state(),
                "loader": self.loader.state_dict(),
            }
            checkpoint.save(self.out / LAST, state)
            dump(self.config, self.out / "config.yaml")
        barrier()


# Settings a resume cannot apply: the restored optimiser's param groups hold lr and weight decay,
# the checkpoint's weights are those of the saved model, and the seed fixed every random stream.
KEPT_ON_RESUME = ("optim.lr", "optim.weight_decay")
FIXED_ON_RESUME = ("model.", "seed")


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _resume_changes(saved_config: Path, config: Mapping[str, Any]) -> list[str]:
    """The settings a resume changes, as `key: old -> new`; UserError for those it cannot apply."""
    import yaml

    from degradations import UserError

    if not saved_config.is_file():
        return []
    saved, now = _flat(yaml.safe_load(saved_config.read_text()) or {}), _flat(config)
    changed = {k: f"{k}: {saved.get(k)} -> {now.get(k)}" for k in sorted(set(saved) | set(now))
               if k != "run.resume" and saved.get(k) != now.get(k)}
    kept = [text for k, text in changed.items() if k in KEPT_ON_RESUME]
    if kept:
        raise UserError(f"run.resume=true restores the optimiser as it was saved, so {'; '.join(kept)} would be ignored; "
                        f"set {'it' if len(kept) == 1 else 'them'} back, or train into another run.out")
    fixed = [text for k, text in changed.items() if k.startswith(FIXED_ON_RESUME)]
    if fixed:
        raise UserError(f"run.resume=true continues the saved run, whose model and seed cannot change ({'; '.join(fixed)}); "
                        "set them back, or train into another run.out")
    return list(changed.values())


def _all_finite(logged: Mapping[str, float], device: torch.device) -> bool:
    """Every rank's losses finite: all ranks agree, so none raises while the others wait in a collective."""
    ok = all(math.isfinite(v) for v in logged.values())
    if dist.is_initialized():
        flag = torch.tensor([0.0 if ok else 1.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        ok = flag.item() == 0.0
    return ok


def _progress(start: int, total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
