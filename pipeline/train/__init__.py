"""Training: stages (a registry of what is trained and how), the loop, configs, checkpoints.

    from pipeline.train import get_stage, resolve, train
    config = resolve(get_stage("perceiver").defaults(), None, ["data.source=out", "run.out=runs/p"])
    train("perceiver", config)
"""

from pipeline.train.config import resolve
from pipeline.train.run import train
from pipeline.train.stages import STAGES, Stage, get_stage, register_stage
from pipeline.train.trained import evaluate_trained

__all__ = ["STAGES", "Stage", "evaluate_trained", "get_stage", "register_stage", "resolve", "train"]
