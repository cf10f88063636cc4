"""Restorer cost per backbone with and without SGM / CFE; the plain backbone, measured in the same run, is the baseline.

CPU: parameters and one training step (forward + L1 backward) on a batch of 4 at 128x128,
median of 5 steps after a warm-up, the variants' steps interleaved, for CPU-sized
configurations (below). The SGM's
network is vit_small_patch14_dinov2 at 224x224 with random weights (cost does not depend
on the weights). With CUDA: training iterations/s (forward, backward, AdamW step) of the
paper-size Restormer at 256x256, batch 8, bf16 autocast.
"""
from __future__ import annotations

import statistics
import time
import warnings

import torch

from model import RandomWeightsWarning, Restorer, backbones

CPU_BACKBONES = {
    "restormer": dict(width=16, blocks=(1, 2, 2, 2), heads=(1, 2, 4, 8), refinement_blocks=1),
    "nafnet": {},  # the registered default: width 16, blocks (1, 1, 2) / 2 / (1, 1, 1)
}
VARIANTS = {
    "plain": dict(sgm=False, cfe=False),
    "+CFE": dict(sgm=False, cfe=True),
    "+SGM": dict(sgm=True, cfe=False),
    "+SGM+CFE": dict(sgm=True, cfe=True),
}


def millions(parameters) -> float:
    return sum(p.numel() for p in parameters) / 1e6


def step_seconds(restorer: Restorer, lq: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> float:
    """Seconds of one training step: forward, L1 backward, and the optimiser step when given."""
    start = time.perf_counter()
    with torch.autocast(lq.device.type, dtype=torch.bfloat16, enabled=lq.is_cuda):
        loss = (restorer(lq) - lq.flip(-1)).abs().mean()
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    restorer.zero_grad(set_to_none=True)
    if lq.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def median_step_seconds(
    restorers: dict[str, Restorer], lq: torch.Tensor, rounds: int, warmup: int, adamw: bool = False
) -> dict[str, float]:
    """Median step time of each restorer, their steps interleaved so that load from elsewhere hits all alike."""
    optimizers = {
        name: torch.optim.AdamW([p for p in r.parameters() if p.requires_grad], lr=1e-4) if adamw else None
        for name, r in restorers.items()
    }
    times: dict[str, list[float]] = {name: [] for name in restorers}
    for round_ in range(warmup + rounds):
        for name, restorer in restorers.items():
            seconds = step_seconds(restorer, lq, optimizers[name])
            if round_ >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def cpu_table() -> None:
    lq = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    print(f"CPU ({threads} threads), batch 4 at 128x128, forward+backward; ratio = time / plain backbone")
    print(f"{'backbone':<10} {'variant':<9} {'trainable M':>11} {'frozen M':>9} {'ms/step':>8} {'ratio':>6}")
    for name in backbones.available():
        restorers = {variant: Restorer(name, **flags, **CPU_BACKBONES[name]) for variant, flags in VARIANTS.items()}
        seconds = median_step_seconds(restorers, lq, rounds=5, warmup=1)
        for variant, restorer in restorers.items():
            trainable = millions(p for p in restorer.parameters() if p.requires_grad)
            frozen = millions(p for p in restorer.parameters() if not p.requires_grad)
            milliseconds, ratio = 1000 * seconds[variant], seconds[variant] / seconds["plain"]
            print(f"{name:<10} {variant:<9} {trainable:>11.2f} {frozen:>9.2f} {milliseconds:>8.0f} {ratio:>6.2f}")


def gpu_lines() -> None:
    lq = torch.rand(8, 3, 256, 256, device="cuda")
    print(f"GPU {torch.cuda.get_device_name()}, paper-size restormer, batch 8 at 256x256, bf16 autocast, AdamW step")
    restorers = {variant: Restorer("restormer", **VARIANTS[variant]).cuda() for variant in ("plain", "+SGM+CFE")}
    seconds = median_step_seconds(restorers, lq, rounds=20, warmup=5, adamw=True)
    for variant, step in seconds.items():
        print(f"restormer {variant:<9} {1 / step:6.2f} it/s  ratio {step / seconds['plain']:.2f}")


if __name__ == "__main__":
    warnings.simplefilter("ignore", RandomWeightsWarning)
    print("weights: random everywhere (timing only)")
    cpu_table()
    if torch.cuda.is_available():
        gpu_lines()
