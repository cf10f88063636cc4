"""Training curves of runs, drawn with matplotlib: train terms and validation metrics against the step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.train.logs import METRICS, read_rows
from shards import output_folder


def training_curves(runs: Mapping[str, str | Path], out: str | Path,
                    train_terms: Sequence[str] = ("loss",), val_terms: Sequence[str] = ()) -> Path:
    """One row of two panels per run (its name -> its folder): the train terms, and the validation
    metrics, against the optimiser step, axes labelled; written as a PNG to `out`."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 2, figsize=(10, 3.2 * len(runs)), squeeze=False)
    for (name, folder), (train_ax, val_ax) in zip(runs.items(), axes):
        rows = read_rows(Path(folder) / METRICS)
        for ax, split, terms in ((train_ax, "train", train_terms), (val_ax, "val", val_terms)):
            split_rows = [r for r in rows if r.get("split") == split]
            drawn = [t for t in terms if any(t in r for r in split_rows)]
            for term in drawn:
                points = [(r["step"], r[term]) for r in split_rows if r.get(term) is not None]
                ax.plot(*zip(*points), marker="o" if split == "val" else None, markersize=3, label=term)
            ax.set_title(f"{name}: {split}" + ("" if drawn else " (nothing logged)"))
            ax.set_xlabel("step")
            ax.set_ylabel("value")
            if drawn:
                ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out)
    output_folder(path.parent)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
