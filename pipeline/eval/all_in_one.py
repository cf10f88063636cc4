"""The all-in-one table: methods x benchmark tasks, PSNR / SSIM under one evaluation protocol.

Every table holds the identity (the degraded input itself) and, unless asked not to, the classical
method of each task (`pipeline.eval.classical`), so a trained model is always shown beside
something that needs no training. Each pair is decoded once and given to every method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import degradations as D
from pipeline.eval.benchmarks import BenchTask
from pipeline.eval.classical import classical_method
from pipeline.eval.metrics import to_tensor, to_uint8
from pipeline.eval.protocols import Protocol, get_protocol
from pipeline.eval.tables import write_table

IDENTITY = "identity (input)"
CLASSICAL = "classical"  # one row: each task's own classical method (named in the rows' `variant`)
Method = Callable[[np.ndarray], np.ndarray]
TABLE = "all_in_one"


def model_method(model: nn.Module, device: torch.device) -> Method:
    """A restorer as a uint8 -> uint8 image function (the output clamped and rounded, as saved images are)."""

    @torch.no_grad()
    def restore(image: np.ndarray) -> np.ndarray:
        return to_uint8(model(to_tensor(image, device)))[0]

    return restore


def model_size(model: nn.Module) -> dict[str, int]:
    """{params: trainable, frozen_params: frozen} parameter counts, the frozen count including
    networks a model holds outside its state dict (ClearAIR's heavy providers)."""
    params = {id(p): p for p in model.parameters()}
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    frozen = sum(p.numel() for p in params.values() if not p.requires_grad)
    for module in model.modules():
        for external in getattr(module, "external_networks", lambda: [])():
            frozen += sum(p.numel() for p in external.parameters() if id(p) not in params)
    return {"params": trainable, "frozen_params": frozen}


def evaluate_methods(
    tasks: Sequence[BenchTask], methods: Mapping[str, Method] | None = None, *, reference: bool = True,
    protocol: str | Protocol = "rgb", progress: bool = True, sizes: Mapping[str, Mapping[str, int]] | None = None,
) -> list[dict[str, float | int | str | None]]:
    """Rows {method, variant, benchmark, task, n, psnr, ssim, protocol, note, params, frozen_params,
    s_per_image}: the identity, the classical method of each task (with `reference`; method
    "classical", its name in `variant`), then `methods` (name -> uint8 image function) on every task;
    then an "average" row for each method that ran on every task (the classical ones do where each
    task has one). `sizes` gives the parameter counts of methods that are models (`model_size`);
    seconds per image are wall-clock, decoding excluded."""
    proto = get_protocol(protocol)
    clash = {IDENTITY, CLASSICAL} & set(methods or {})
    if clash:
        raise D.UserError(f"a method may not be called {sorted(clash)[0]!r}: that is a reference row's name")
    rows = []
    for task in tasks:
        run: dict[str, Method] = {IDENTITY: lambda image: image}
        variants = {}
        classical = classical_method(task.degradation) if reference else None
        if classical is not None:
            variants[CLASSICAL], run[CLASSICAL] = classical
        run.update(methods or {})
        sums = {name: np.zeros(3) for name in run}
        for _, degraded, clean in tqdm(task.images(), total=len(task), desc=task.name, unit="image", disable=not progress):
            for name, method in run.items():
                start = time.perf_counter()
                out = method(degraded)
                sums[name] += (proto.psnr(clean, out), proto.ssim(clean, out), time.perf_counter() - start)
        for name, (psnr, ssim, seconds) in sums.items():
            rows.append({
                "method": name, "variant": variants.get(name, ""), "benchmark": task.benchmark.title, "task": task.name, "n": len(task),
                "psnr": psnr / len(task), "ssim": ssim / len(task), "protocol": proto.name, "note": task.note,
                **_size(sizes, name), "s_per_image": seconds / len(task),
            })
    return rows + _averages(rows, len(tasks), proto.name, sizes)


def _size(sizes: Mapping[str, Mapping[str, int]] | None, name: str) -> dict[str, int | None]:
    size = (sizes or {}).get(name, {})
    return {"params": size.get("params"), "frozen_params": size.get("frozen_params")}


def _averages(rows: list[dict], n_tasks: int, protocol: str, sizes: Mapping[str, Mapping[str, int]] | None) -> list[dict]:
    averages = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        if len(mine) != n_tasks:  # an average over some of the tasks would read as the table's average
            continue
        n = sum(r["n"] for r in mine)
        averages.append({
            "method": method, "variant": "", "benchmark": "", "task": "average", "n": n,
            "psnr": float(np.mean([r["psnr"] for r in mine])), "ssim": float(np.mean([r["ssim"] for r in mine])),
            "protocol": protocol, "note": "", **_size(sizes, method),
            "s_per_image": sum(r["s_per_image"] * r["n"] for r in mine) / n,
        })
    return averages


def format_all_in_one(rows: Sequence[Mapping[str, float | int | str]]) -> str:
    """Methods down, tasks across, `PSNR / SSIM` in each cell, as the papers print it; notes below."""
    tasks = list(dict.fromkeys(str(r["task"]) for r in rows))
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    cell = {(r["method"], r["task"]): f"{r['psnr']:.2f} / {r['ssim']:.4f}" for r in rows}
    width = max(len(m) for m in methods) if methods else 6
    cols = [max(len(t), 16) for t in tasks]
    lines = [f"{'method':<{width}}  " + "  ".join(f"{t:>{w}}" for t, w in zip(tasks, cols))]
    for m in methods:
        lines.append(f"{m:<{width}}  " + "  ".join(f"{cell.get((m, t), '-'):>{w}}" for t, w in zip(tasks, cols)))
    protocol = rows[0]["protocol"] if rows else ""
    lines.append(f"(PSNR dB / SSIM, protocol {protocol!r})")
    variants: dict[str, list[str]] = {}
    for r in rows:
        if r["method"] == CLASSICAL and r["variant"]:
            variants.setdefault(str(r["variant"]), []).append(str(r["task"]))
    if variants:
        lines.append("classical: " + "; ".join(f"{v} ({', '.join(tasks)})" for v, tasks in variants.items()))
    notes = dict.fromkeys(f"{r['task']}: {r['note']}" for r in rows if r["note"] and r["task"] != "average")
    lines += [f"note: {n}" for n in notes]
    models = {str(r["method"]): r for r in rows if r.get("params") is not None and r["task"] == "average"}
    if models:  # the cost of each model, side by side
        lines.append(f"{'model':<{width}}  {'parameters':>12}  {'frozen':>12}  {'s / image':>10}")
        lines += [f"{m:<{width}}  {_millions(r['params']):>12}  {_millions(r['frozen_params']):>12}  {r['s_per_image']:>10.3f}"
                  for m, r in models.items()]
    return "\n".join(lines)


def _millions(count: int | None) -> str:
    return "-" if count is None else f"{count / 1e6:.2f} M"


def write_all_in_one(rows: Sequence[Mapping[str, float | int | str]], out: str | Path) -> tuple[Path, Path]:
    """OUT/all_in_one.csv and OUT/all_in_one.json."""
    return write_table(rows, Path(out), TABLE)
