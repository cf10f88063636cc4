"""Restorer cost per backbone with and without SGM / CFE; the plain backbone, measured in the same run, is the baseline.

CPU: parameters and one training step (forward + L1 backward) on a batch of 4 at 128x128,
median of 5 steps after a warm-up, the variants' steps interleaved, for CPU-sized
configurations (below). The SGM's
network is vit_small_patch14_dinov2 at 224x224 with random weights (cost does not depend
on the weights). With CUDA: training iterations/s (forward, backward, AdamW step) of the
paper-size Restormer at 256x256, batch 8, bf16 autocast.

ClearAIR: the same step for a CPU-sized ClearAIR with each module (QGM, SCA, DAM) on alone and
all together, ratio to its plain U-Net, the providers' outputs computed once and given to the
model, so the step times the network alone (the CFE of the default task provider then does not
run either); the providers' own seconds per image; and the tensors autograd saves for backward,
summed (an upper bound of a step's activation memory, parameters included), for the whole model
and for SCA alone at two sizes, whose ratio shows memory linear in H x W (4x the pixels: 4x,
where the authors' pixel-to-pixel attention would be 16x). With CUDA: the paper-size ClearAIR at
256x256, batch 4, bf16: iterations/s and peak memory.
"""
from __future__ import annotations

import statistics
import time
import warnings

import torch

from model import ClearAIR, RandomWeightsWarning, Restorer, backbones
from model.clearair.modules import SemanticCrossAttention

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


CLEARAIR_CPU = dict(width=16, blocks=(1, 2, 2, 2), heads=(1, 2, 4, 8), refinement_blocks=1)
CLEARAIR_VARIANTS = {
    "plain": dict(qgm=False, sca=False, dam=False),
    "+QGM": dict(qgm=True, sca=False, dam=False),
    "+SCA": dict(qgm=False, sca=True, dam=False),
    "+DAM": dict(qgm=False, sca=False, dam=True),
    "all": dict(qgm=True, sca=True, dam=True),
}


class _Given(torch.nn.Module):
    """A ClearAIR called with fixed provider outputs, so a step times the network alone."""

    def __init__(self, model: ClearAIR, given: dict) -> None:
        super().__init__()
        self.model, self.given = model, given

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.model(lq, **self.given)


def saved_megabytes(module: torch.nn.Module, *inputs: torch.Tensor) -> float:
    """MB of the tensors autograd saves in one forward of `module` (what a training step holds at its peak)."""
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(*inputs).float().mean().backward()
    module.zero_grad(set_to_none=True)
    return total[0] / 2**20


def clearair_cpu_table() -> None:
    lq = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    print(f"ClearAIR (width 16, blocks 1/2/2/2), batch 4 at 128x128, forward+backward, providers precomputed; "
          "ratio = time / plain U-Net")
    print(f"{'variant':<7} {'trainable M':>11} {'frozen M':>9} {'ms/step':>8} {'ratio':>6} {'saved MB':>9}")
    full = ClearAIR(**CLEARAIR_CPU)
    with torch.no_grad():
        given = full.provide(lq)
    models = {}
    for name, flags in CLEARAIR_VARIANTS.items():
        model = ClearAIR(**CLEARAIR_CPU, **flags)
        keep = {"qgm": "quality", "sca": "regions", "dam": "task"}
        models[name] = _Given(model, {given_key: given[given_key] for flag, given_key in keep.items() if flags[flag]})
    seconds = median_step_seconds(models, lq, rounds=5, warmup=1)
    for name, wrapped in models.items():
        trainable = millions(p for p in wrapped.parameters() if p.requires_grad)
        frozen = millions(p for p in wrapped.parameters() if not p.requires_grad)
        print(f"{name:<7} {trainable:>11.2f} {frozen:>9.2f} {1000 * seconds[name]:>8.0f} "
              f"{seconds[name] / seconds['plain']:>6.2f} {saved_megabytes(wrapped, lq):>9.1f}")
    for kind, provider in (("quality", full.quality_provider), ("regions", full.region_provider), ("task", full.task_provider)):
        with torch.no_grad():
            start = time.perf_counter()
            provider(lq)
        print(f"provider {kind:<8} {type(provider).__name__:<18} {1000 * (time.perf_counter() - start) / len(lq):6.1f} ms/image")
    sca, megabytes = SemanticCrossAttention(48), {}
    for side in (64, 128):
        features = torch.randn(4, 48, side, side, requires_grad=True)
        masks = (torch.rand(4, 16, side, side, generator=torch.Generator().manual_seed(side)) > 0.5).float()
        megabytes[side] = saved_megabytes(_SCAOnly(sca, masks), features)
    print(f"SCA alone (48 channels, 16 regions, batch 4): saved {megabytes[64]:.1f} MB at 64x64, {megabytes[128]:.1f} MB "
          f"at 128x128, ratio {megabytes[128] / megabytes[64]:.2f} for 4x the pixels (linear: 4, quadratic: 16)")


class _SCAOnly(torch.nn.Module):
    def __init__(self, sca: SemanticCrossAttention, masks: torch.Tensor) -> None:
        super().__init__()
        self.sca, self.masks = sca, masks

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.sca(features, self.masks)


def clearair_gpu_lines() -> None:
    lq = torch.rand(4, 3, 256, 256, device="cuda")
    model = ClearAIR().cuda()
    with torch.no_grad():
        given = model.provide(lq)
    torch.cuda.reset_peak_memory_stats()
    seconds = median_step_seconds({"all": _Given(model, given)}, lq, rounds=20, warmup=5, adamw=True)["all"]
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"GPU {torch.cuda.get_device_name()}, paper-size ClearAIR, batch 4 at 256x256, bf16 autocast, AdamW step, "
          f"providers precomputed: {1 / seconds:.2f} it/s, peak memory {peak:.2f} GiB")


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
    clearair_cpu_table()
    if torch.cuda.is_available():
        gpu_lines()
        clearair_gpu_lines()
