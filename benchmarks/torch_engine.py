"""The batched torch engine (D.degrade_batch) against the NumPy engine (D.degrade) on the same images, in one run.

    python benchmarks/torch_engine.py [--size 256] [--batch 32] [--threads 2] [--gpu-batches 64,256]

Both engines degrade the same batch of builtin photo crops (severity 0.6, a seed per image);
the NumPy engine one image at a time on one core (as a loader worker does), the torch engine
the whole batch on the CPU with `--threads` threads, and on the GPU at each of `--gpu-batches`
when one is present (with the GPU's name; the goal there is 5,000 images/s per type at 256 x 256).
Prints images/s and the ratio torch / NumPy per type. Then the share of a training step spent on
synthesis when a tiny restorer's step degrades its batch on the step's device.
"""

from __future__ import annotations

import os
import sys

sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import statistics
import time

import cv2
import numpy as np
import torch

import degradations as D

TYPES = ("noise", "haze", "blur", "rain", "snow", "low_light", "jpeg")


def crops(size: int, n: int) -> np.ndarray:
    photos = [cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA) for p in D.builtin_photos().values()]
    return np.stack([photos[i % len(photos)] for i in range(n)])


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synth_share(device: torch.device, size: int, batch: int, repeats: int) -> tuple[float, float]:
    """(seconds of degrade_batch, seconds of a tiny restorer's forward + backward) per batch on `device`."""
    from model import Restorer

    images = torch.from_numpy(crops(size, batch)).permute(0, 3, 1, 2).contiguous().to(device)
    model = Restorer("nafnet", sgm=False, cfe=False, width=12, encoder_blocks=[1, 1, 1], middle_blocks=1, decoder_blocks=[1, 1, 1]).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    seeds = list(range(batch))

    def synth() -> torch.Tensor:
        out, _ = D.degrade_batch(images, "rain", 0.6, seeds)
        return out

    def step() -> None:
        lq = synth().float() / 255
        loss = (model(lq) - images.float() / 255).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def synth_only() -> None:
        synth()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return timed(synth_only, repeats), timed(step, repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--gpu-batches", default="64,256")
    args = p.parse_args()
    cv2.setNumThreads(1)
    images = crops(args.size, args.batch)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    seeds = list(range(args.batch))
    print(f"{args.size} x {args.size}, batch {args.batch}, severity 0.6; NumPy engine on 1 core, torch on {args.threads} CPU threads")
    print(f"{'type':<10} {'numpy img/s':>11} {'torch cpu img/s':>15} {'ratio':>6}")
    ratios = []
    for name in TYPES:
        torch.set_num_threads(1)
        numpy_s = timed(lambda: [D.degrade(im, name, 0.6, seed=s) for im, s in zip(images, seeds)], args.repeats)
        torch.set_num_threads(args.threads)
        torch_s = timed(lambda: D.degrade_batch(tensor, name, 0.6, seeds), args.repeats)
        ratios.append(numpy_s / torch_s)
        print(f"{name:<10} {args.batch / numpy_s:>11.1f} {args.batch / torch_s:>15.1f} {numpy_s / torch_s:>6.2f}")
    print(f"median ratio torch cpu / numpy: {statistics.median(ratios):.2f} (torch on {args.threads} threads, numpy on 1)")
    synth, step = synth_share(torch.device("cpu"), args.size, args.batch, args.repeats)
    print(f"cpu: rain synthesis {synth * 1e3:.0f} ms of a {step * 1e3:.0f} ms tiny-restorer step ({synth / step:.0%})")
    if torch.cuda.is_available():
        device = torch.device("cuda")
        print(f"\nGPU: {torch.cuda.get_device_name(0)}")
        for b in (int(v) for v in args.gpu_batches.split(",")):
            batch = torch.from_numpy(crops(args.size, b)).permute(0, 3, 1, 2).contiguous().to(device)
            for name in TYPES:
                def run(name=name, batch=batch, b=b) -> None:
                    D.degrade_batch(batch, name, 0.6, list(range(b)))
                    torch.cuda.synchronize()
                seconds = timed(run, args.repeats)
                print(f"batch {b:>4} {name:<10} {b / seconds:>9.0f} img/s (goal 5000)")
        synth, step = synth_share(device, args.size, 64, args.repeats)
        print(f"gpu: rain synthesis {synth * 1e3:.1f} ms of a {step * 1e3:.1f} ms tiny-restorer step ({synth / step:.0%})")
    else:
        print("no GPU here: the GPU lines need one (the goal: 5,000 images/s per type at 256 x 256 on an H100 / H200)")


if __name__ == "__main__":
    main()
