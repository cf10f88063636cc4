"""perceive-ir demo: the whole path on the builtin photos, in minutes on a CPU."""

from __future__ import annotations

import argparse

HELP = "build shards from the builtin photos, train a tiny perceiver and restorer, evaluate, write a report"
EXAMPLES = [
    "perceive-ir demo",
    "perceive-ir demo -o /tmp/demo --steps 200,100      # a quicker, weaker run",
    "perceive-ir demo --tiers paper -o demo_paper       # Perceive-IR's tiers: medium restorer in 2 folds, render, train",
    "perceive-ir demo --restorer clearair -o demo_clearair   # a tiny ClearAIR as the restorer",
    "perceive-ir demo --maps -o demo_maps                  # severity and quality maps, the perceiver's dense head",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", default="demo_out", help="output folder (default demo_out/)")
    p.add_argument("--workers", type=int, default=2, help="build workers and loader workers")
    p.add_argument("--steps", help="training steps of the perceiver, the restorer and (--tiers paper) each fold of the "
                                   "medium restorer (default: 800,1000; with --tiers paper 500,700,200; with --restorer clearair 500 restorer steps)")
    p.add_argument("--tiers", choices=["bands", "paper"], default="bands",
                   help="bands: tiers are SSIM bands (default); paper: hq / restored / degraded, as Perceive-IR")
    p.add_argument("--restorer", choices=["perceive-ir", "clearair"], default="perceive-ir",
                   help="the restorer trained: Perceive-IR's (default) or ClearAIR, guided by the demo's perceiver")
    p.add_argument("--maps", action="store_true",
                   help="the maps demo instead: a build with severity and quality maps, the perceiver's dense head trained on "
                        "them and validated per pixel, and a picture of image | maps | prediction (--steps: perceiver steps, default 800)")


def run(args: argparse.Namespace) -> int:
    import warnings

    import degradations as D
    from pipeline.cli.args import numbers
    from pipeline.report.demo import default_steps, gains_by_type, run_demo

    if args.maps:
        return _maps_demo(args)
    steps = tuple(numbers(args.steps, int, "--steps")) if args.steps else default_steps(args.tiers, args.restorer)
    if len(steps) not in (2, 3) or min(steps) < 1:
        raise D.UserError(f"--steps wants two or three positive integers such as 800,1000,300; got {args.steps!r}")
    warnings.filterwarnings("once", message=".*RANDOM weights.*")
    s = run_demo(args.out, args.workers, steps, tiers=args.tiers, restorer_arch=args.restorer)
    inputs = "lq inputs" if args.tiers == "paper" else "mean over the mq and lq tiers"
    print()
    print("perceive-ir demo: tiny, randomly initialised models on the builtin photos (CPU)")
    print(f"  shards:     {s['samples']} samples ({args.tiers} tiers, {s['skipped_samples']} skipped), {args.out}/shards")
    print(f"  perceiver:  validation tier accuracy {s['perceiver_val_tier_accuracy']:.3f} (chance 0.333), "
          f"Spearman(quality, -severity) {s['perceiver_val_srocc']:.3f}")
    print(f"  restorer:   {'ClearAIR, ' if args.restorer == 'clearair' else ''}validation PSNR {s['restorer_val_input_psnr']:.2f} -> {s['restorer_val_psnr']:.2f} dB "
          f"({s['restorer_val_psnr_gain_db']:+.2f} dB)")
    print(f"  per type:   {gains_by_type(s)} dB ({inputs})")
    print(f"  time:       {s['seconds']['total']:.0f} s; report: {args.out}/report.md")
    return 0


def _maps_demo(args: argparse.Namespace) -> int:
    import warnings

    from pipeline.cli.args import numbers
    from pipeline.report.maps_demo import MAPS_STEPS, check_steps, run_maps_demo

    steps = check_steps(numbers(args.steps, int, "--steps")[0]) if args.steps else MAPS_STEPS
    warnings.filterwarnings("once", message=".*RANDOM weights.*")
    s = run_maps_demo(args.out, args.workers, steps)
    print()
    print("perceive-ir demo --maps: a tiny, randomly initialised perceiver with a dense head on the builtin photos (CPU)")
    print(f"  shards:     {s['samples']} samples with severity and quality maps ({s['skipped_samples']} skipped), {args.out}/shards")
    print(f"  perceiver:  validation tier accuracy {s['tier_accuracy']:.3f} (chance 0.333)")
    print(f"  dense head: per-pixel tier accuracy {s['dense_pixel_accuracy']:.3f}; predicted vs measured quality map "
          f"r = {s['dense_quality_corr']:.3f} (the global score spread flat: r = {s['flat_quality_corr']:.3f})")
    print(f"  time:       {s['seconds']['total']:.0f} s; picture: {args.out}/quality_maps.png; report: {args.out}/report.md")
    return 0
