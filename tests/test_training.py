"""The training loop: config, schedule, loss falling, exact resume, DDP over two gloo processes."""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import degradations as D
from helpers import stage_config
from pipeline.train import get_stage
from pipeline.train.config import parse_override, resolve
from pipeline.train.distributed import DistEnv
from pipeline.train.stages import seeded_torch
from pipeline.train.stages.perceiver import PerceiverTask
from pipeline.train.stages.restorer import RestorerTask
from pipeline.train.trainer import LAST, Schedule, fit

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class ListLoader:
    """A stand-in loader: a fixed list of batches per epoch, with the position in its state."""

    def __init__(self, batches: list[dict]) -> None:
        self.batches, self.epoch, self.start = batches, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.start = epoch, 0

    def __iter__(self):
        for i in range(self.start, len(self.batches)):
            self.position = i + 1
            yield self.batches[(i + self.epoch) % len(self.batches)]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": getattr(self, "position", 0)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.start = state["epoch"], state["batch"]


def tier_batches(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        tier = torch.randint(0, 3, (6,), generator=g)
        # Learnable signal: brightness encodes the tier.
        image = 0.2 + 0.3 * tier.view(-1, 1, 1, 1) + 0.05 * torch.rand(6, 3, 32, 32, generator=g)
        out.append({"image": image, "tier": tier, "severity": 1.0 - tier / 2})
    return out


def triplet_batches(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        hq = torch.rand(2, 3, 32, 32, generator=g)
        out.append({"hq": hq, "mq": (hq + 0.1).clamp(0, 1), "lq": (hq + 0.3).clamp(0, 1), "type": ["noise", "haze"]})
    return out


config = stage_config


CPU = DistEnv(0, 1, 0, torch.device("cpu"))


def make_task(stage: str, cfg: dict):
    return PerceiverTask(cfg, None) if stage == "perceiver" else RestorerTask(cfg, None, torch.device("cpu"))


def run_fit(stage: str, cfg: dict, loader) -> torch.nn.Module:
    with seeded_torch(cfg["seed"]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = make_task(stage, cfg)
        fit(task, loader, cfg, CPU, log=lambda _: None)
    return task.model


def test_config_layers_and_unknown_keys(tmp_path):
    (tmp_path / "c.yaml").write_text("optim:\n  lr: 0.01\ndata:\n  batch_size: 4\n")
    defaults = get_stage("perceiver").defaults()
    cfg = resolve(defaults, tmp_path / "c.yaml", ["optim.lr=5e-4", "run.bf16=false"])
    assert cfg["optim"]["lr"] == 5e-4 and cfg["data"]["batch_size"] == 4 and cfg["run"]["bf16"] is False
    assert defaults["optim"]["lr"] == 2e-3  # defaults untouched
    with pytest.raises(ValueError, match="unknown config key 'optim.lrr'"):
        resolve(defaults, None, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="section.key=value"):
        parse_override("optim.lr")


def test_schedule_warms_up_then_decays():
    s = Schedule(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    factors = [s.factor(i) for i in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[100] == pytest.approx(0.1)


@pytest.mark.parametrize("stage", ["perceiver", "restorer"])
def test_loss_falls_on_a_fixed_batch(stage, tmp_path):
    batch = (tier_batches if stage == "perceiver" else triplet_batches)(1)
    cfg = config(stage, tmp_path, steps=12)
    run_fit(stage, cfg, ListLoader(batch))
    import json

    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


class _EventAfter(ListLoader):
    """Calls `event` before serving the batch after the first `n`: a crash raises there, a
    scheduler's SIGTERM arrives there."""

    def __init__(self, batches: list[dict], n: int, event) -> None:
        super().__init__(batches)
        self.n, self.served, self.event = n, 0, event

    def __iter__(self):
        for batch in super().__iter__():
            if self.served == self.n:
                self.event()
            self.served += 1
            yield batch


def _crash() -> None:
    raise KeyboardInterrupt


def _crash_after(batches: list[dict], n: int) -> _EventAfter:
    """A loader that raises after `n` batches, as a crash would."""
    return _EventAfter(batches, n, _crash)


def run_fit_interrupted(stage, cfg, loader):
    with pytest.raises(KeyboardInterrupt):  # caught here, or pytest would end the session
        run_fit(stage, cfg, loader)


@pytest.mark.parametrize("stage", ["restorer", "clearair"])
def test_resume_after_a_crash_gives_the_same_parameters(stage, tmp_path):
    batches = triplet_batches(3)
    full = run_fit(stage, config(stage, tmp_path / "full", steps=8), ListLoader(batches))
    run_fit_interrupted(stage, config(stage, tmp_path / "cut", steps=8, checkpoint_every=4), _crash_after(batches, 5))
    assert (tmp_path / "cut" / LAST).is_file()
    resumed = run_fit(stage, config(stage, tmp_path / "cut", steps=8, resume=True), ListLoader(batches))
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    if stage == "clearair":
        return
    # A new learning rate would be overridden by the restored optimiser: refused, not ignored.
    changed = config("restorer", tmp_path / "cut", steps=8, resume=True)
    changed["optim"]["lr"] = changed["optim"]["lr"] / 2
    with pytest.raises(D.UserError, match="optim.lr: .* would be ignored"):
        run_fit("restorer", changed, ListLoader(batches))
    # The weights are the saved model's: another model is refused; other changes are applied and named.
    from pipeline.train.trainer import _resume_changes

    changed = config("restorer", tmp_path / "cut", steps=8, resume=True)
    changed["model"]["cfe"] = False
    with pytest.raises(D.UserError, match=r"model and seed cannot change \(model.cfe: True -> False\)"):
        run_fit("restorer", changed, ListLoader(batches))
    longer = config("restorer", tmp_path / "cut", steps=12, resume=True)
    assert _resume_changes(tmp_path / "cut" / "config.yaml", longer) == ["optim.steps: 8 -> 12"]


def test_a_damaged_checkpoint_is_refused_and_the_resume_falls_back_to_the_previous_one(tmp_path):
    from pipeline.train import checkpoint

    batches = triplet_batches(3)
    full = run_fit("restorer", config("restorer", tmp_path / "full", steps=8), ListLoader(batches))
    run_fit_interrupted("restorer", config("restorer", tmp_path / "cut", steps=8, checkpoint_every=2), _crash_after(batches, 5))
    last, previous = tmp_path / "cut" / LAST, tmp_path / "cut" / checkpoint.PREVIOUS
    assert checkpoint.load(last)["step"] == 4 and checkpoint.load(previous)["step"] == 2  # the one before is kept
    data = bytearray(last.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 256] = os.urandom(256)  # a few bytes damaged on disk
    last.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointDamaged, match="SHA-256 differs"):
        checkpoint.load(last)
    resumed = run_fit("restorer", config("restorer", tmp_path / "cut", steps=8, resume=True), ListLoader(batches))
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # resumed from step 2: the same run, two steps redone
    # Truncated, without its digest: torch.load's failure is named, not a traceback.
    checkpoint.digest_path(last).unlink()
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(checkpoint.CheckpointDamaged, match="does not load"):
        checkpoint.load(last)
    last.write_bytes(os.urandom(4000))  # not even a zip: torch refuses to unpickle it
    with pytest.raises(checkpoint.CheckpointDamaged, match="does not load"):
        checkpoint.load(last)


def test_sigterm_saves_and_stops_as_unfinished(tmp_path):
    import signal

    from pipeline.train import checkpoint
    from pipeline.train.trainer import TrainingStopped

    cfg = config("restorer", tmp_path, steps=8, checkpoint_every=100)
    with pytest.raises(TrainingStopped, match="no model exported"):
        run_fit("restorer", cfg, _EventAfter(triplet_batches(3), 3, lambda: os.kill(os.getpid(), signal.SIGTERM)))
    assert checkpoint.load(tmp_path / LAST)["step"] == 4  # saved at the step boundary after the signal


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, stage: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from pipeline.train import checkpoint, trainer
    from pipeline.train.distributed import init_distributed, shutdown

    saved = checkpoint.save

    def save_and_sign(path, state):
        Path(out, f"saved-by-rank-{rank}").touch()
        return saved(path, state)

    trainer.checkpoint.save = save_and_sign
    env = init_distributed("cpu")
    cfg = config(stage, Path(out), steps=4, checkpoint_every=2)
    batches = (tier_batches if stage == "perceiver" else triplet_batches)(2, seed=rank)
    with seeded_torch(0), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = make_task(stage, cfg)
        result = fit(task, ListLoader(batches), cfg, env, log=lambda _: None)
    Path(out, f"steps-rank-{rank}").write_text(str(result["step"]))
    first = next(task.model.parameters()).detach()
    torch.save(first, Path(out, f"param-rank-{rank}.pt"))
    shutdown()


@pytest.mark.parametrize("stage", ["perceiver", "restorer", "clearair"])
def test_ddp_two_gloo_processes(stage, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), stage, str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "steps-rank-0").read_text() == (tmp_path / "steps-rank-1").read_text() == "4"
    assert (tmp_path / "saved-by-rank-0").exists() and not (tmp_path / "saved-by-rank-1").exists()
    assert (tmp_path / LAST).is_file()
    a = torch.load(tmp_path / "param-rank-0.pt", weights_only=True)
    b = torch.load(tmp_path / "param-rank-1.pt", weights_only=True)
    assert torch.equal(a, b)  # DDP kept the replicas identical


def test_stages_are_a_registry_with_defaults_as_data(capsys):
    from pipeline.cli import main
    from pipeline.train import STAGES

    assert set(STAGES) >= {"perceiver", "restorer"}
    restorer = get_stage("restorer").defaults()
    # The paper's loss weights, read from restorer.yaml over base.yaml.
    assert [restorer["loss"][k] for k in ("reconstruction", "contrastive", "quality", "perceptual")] == [1.0, 0.1, 0.05, 0.1]
    assert restorer["data"]["crop"] == get_stage("perceiver").defaults()["data"]["crop"] == 128  # shared, from base.yaml
    assert get_stage("perceiver").mode == "tiers" and get_stage("restorer").mode == "triplets"
    assert main(["train", "denoiser", "--data.source", "x"]) == 2
    assert "unknown training stage 'denoiser'; stages are medium, perceiver, restorer" in capsys.readouterr().err


def test_a_quality_loss_without_a_perceiver_is_warned_about_at_training_start(tmp_path):
    cfg = config("restorer", tmp_path)
    assert cfg["loss"]["quality"] > 0 and cfg["loss"]["perceiver"] is None
    with seeded_torch(0), pytest.warns(UserWarning, match="training without the CLIP quality loss"):
        RestorerTask(cfg, None, torch.device("cpu"))


def test_the_restorer_reconstruction_loss_follows_its_kind_and_psnr_ceiling(tmp_path):
    from model.losses import PSNRLoss

    batch = triplet_batches(1)[0]
    restored, clean = batch["mq"], batch["hq"]
    cfg = config("restorer", tmp_path)
    cfg["loss"].update(quality=0.0, reconstruction_kind="psnr", psnr_ceiling=40.0)
    with seeded_torch(0):
        task = RestorerTask(cfg, None, torch.device("cpu"))
    # mq is hq + 0.1 clamped: about 20 dB, where a 40 dB ceiling moves the loss by under 0.05 dB
    # and the 30 dB one of another task by about 0.4 dB.
    assert float(task.reconstruction(restored, clean)) == pytest.approx(float(PSNRLoss(40.0)(restored, clean)), abs=1e-6)
    assert float(task.reconstruction(restored, clean)) != pytest.approx(float(PSNRLoss(30.0)(restored, clean)), abs=1e-3)
    cfg["loss"]["reconstruction_kind"] = "l1"
    with seeded_torch(0):
        task = RestorerTask(cfg, None, torch.device("cpu"))
    assert float(task.reconstruction(restored, clean)) == pytest.approx(float((restored - clean).abs().mean()), abs=1e-6)


def test_logs_jsonl_csv_tensorboard_and_a_final_validation_per_type_and_tier(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    batches = triplet_batches(2)
    cfg = config("restorer", tmp_path, steps=4, eval_every=2)
    with seeded_torch(0), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = RestorerTask(cfg, ListLoader(batches), torch.device("cpu"))
        result = fit(task, ListLoader(batches), cfg, CPU, log=lambda _: None)
    import csv
    import json

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in val] == [2, 4]  # every eval_every steps; the last one is the final validation
    assert "val_psnr_gain/noise/lq" in val[-1] and result["val_psnr_gain/haze/mq"] == val[-1]["val_psnr_gain/haze/mq"]
    with (tmp_path / "metrics.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and {"split", "step", "loss", "val_psnr"} <= set(table[0])
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    assert {"train/loss", "train/reconstruction", "val/val_psnr", "val/val_psnr/noise/lq"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert events.Tags()["images"] == ["val/before_after"]


def test_training_curves_are_drawn_from_the_logs(tmp_path):
    from pipeline.report.plots import training_curves

    cfg = config("perceiver", tmp_path / "run", steps=3)
    run_fit("perceiver", cfg, ListLoader(tier_batches(2)))
    png = training_curves({"perceiver": tmp_path / "run"}, tmp_path / "curves.png", ("loss", "accuracy"), ("tier_accuracy",))
    import cv2

    assert cv2.imread(str(png)).shape == (320, 1000, 3)


def test_the_cli_exits_143_on_sigterm_without_exporting(monkeypatch, capsys, tmp_path):
    import pipeline.train
    from pipeline.cli import main
    from pipeline.train.trainer import TrainingStopped

    def stopped(stage, config):
        raise TrainingStopped("stopped by SIGTERM at step 3 of 8: saved last.pt; no model exported")

    monkeypatch.setattr(pipeline.train, "train", stopped)
    assert main(["train", "restorer", f"data.source={tmp_path}", f"run.out={tmp_path / 'run'}"]) == 143
    assert "stopped by SIGTERM" in capsys.readouterr().err
