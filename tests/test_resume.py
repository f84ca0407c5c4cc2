"""Nothing lost: kill -9 mid-epoch then --resume matches an uninterrupted run; atomic checkpoints; best.ckpt
keeps the later model on a tie; non-finite steps are skipped and counted, and a run that keeps producing them
stops with a reason."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from asr.errors import ASRError
from asr.training.callbacks import AtomicCheckpointIO, BestCheckpoint

STEPS_PER_EPOCH = 4  # the 8 utterances in batches of at most 8 s of padded audio


def write_config(tmp_path: Path, manifest, name: str) -> Path:
    config = {
        "out_dir": str(tmp_path / name),
        "seed": 3,
        "data": {"train": str(manifest), "val": str(manifest), "max_batch_seconds": 8, "num_workers": 0},
        "model": {"hidden": 48, "layers": 1, "subsample_factor": 4, "dropout": 0.1},
        "checkpoint": {"last_every_n_steps": 3},  # coprime with the epoch length: mid-epoch checkpoints
        "optim": {"lr": 3e-3, "warmup_steps": 5},
        # precision pinned: `auto` decides by a timing, which two separate runs need not agree on
        "trainer": {
            "max_epochs": 8,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "accelerator": "cpu",
            "precision": "32-true",
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_cmd(config: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "asr.cli", "train", "--config", str(config), *extra]


def final_state(run: Path) -> dict:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt


@pytest.mark.slow
def test_kill_mid_epoch_then_resume_matches_uninterrupted_run(tiny_corpus, tmp_path):
    from asr.data.loader import DurationBatchSampler
    from asr.data.manifest import read_manifest

    manifest = tiny_corpus[1]["train"]
    assert len(DurationBatchSampler([r["duration"] for r in read_manifest(manifest)], 8)) == STEPS_PER_EPOCH
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same thread count in every run: same arithmetic
    reference = write_config(tmp_path, manifest, "reference")
    subprocess.run(train_cmd(reference), check=True, capture_output=True, env=env, timeout=300)

    killed = write_config(tmp_path, manifest, "killed")
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(train_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    step_at_kill = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            if step >= 2 * STEPS_PER_EPOCH and step % STEPS_PER_EPOCH:
                proc.send_signal(signal.SIGKILL)  # no clean-up of any kind
                proc.wait()
                break
        time.sleep(0.005)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-epoch"
    step_at_kill = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert step_at_kill % STEPS_PER_EPOCH, "kill landed on an epoch boundary"  # resumes mid-epoch
    resumed = subprocess.run(train_cmd(killed, "--resume"), capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming epoch" in resumed.stderr

    ref, res = final_state(tmp_path / "reference"), final_state(tmp_path / "killed")
    assert res["global_step"] == ref["global_step"] == 8 * STEPS_PER_EPOCH
    assert res["epoch"] == ref["epoch"]
    assert res["lr_schedulers"][0]["last_epoch"] == ref["lr_schedulers"][0]["last_epoch"]
    for key, value in ref["state_dict"].items():  # stated tolerance: 1e-5 absolute on every weight
        assert torch.allclose(res["state_dict"][key], value, atol=1e-5), key
    ref_opt, res_opt = ref["optimizer_states"][0]["state"], res["optimizer_states"][0]["state"]
    assert all(torch.allclose(res_opt[k]["exp_avg"], ref_opt[k]["exp_avg"], atol=1e-6) for k in ref_opt)


def test_resume_keeps_the_precision_auto_chose(tiny_corpus, tmp_path, monkeypatch):
    """precision: auto is decided by a measurement at the run's start, saved with the run's config, and a
    resumed run keeps it rather than measuring again (a busy machine might decide otherwise)."""
    from conftest import OVERFIT_CONFIG

    import asr.training.precision
    from asr.config import Config
    from asr.training.train import train

    manifest = str(tiny_corpus[1]["train"])
    values = {
        **OVERFIT_CONFIG,
        "out_dir": str(tmp_path / "run"),
        "data": {"train": manifest, "val": manifest, "max_batch_seconds": 200, "num_workers": 0},
        "trainer": {**OVERFIT_CONFIG["trainer"], "max_epochs": 1, "precision": "auto", "accelerator": "cpu"},
    }
    # fp32 first: the resumed run must not switch to bf16 (which an AVX2-only CPU could not even run).
    monkeypatch.setattr(asr.training.precision, "auto_precision", lambda *args, **kwargs: "32-true")
    train(Config.from_dict(values))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["asr"]["config"]["trainer"]["precision"] == "32-true"
    monkeypatch.setattr(asr.training.precision, "auto_precision", lambda *args, **kwargs: "bf16-mixed")
    config = Config.from_dict({**values, "trainer": {**values["trainer"], "max_epochs": 2}})
    assert config.trainer["precision"] == "auto"  # this run's YAML still says auto
    train(config, resume=True)
    resumed = torch.load(last, weights_only=True)
    assert resumed["epoch"] == 1 and resumed["asr"]["config"]["trainer"]["precision"] == "32-true"
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["trainer"]["precision"] == "32-true"


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"weights": torch.ones(3)}, path)

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        io.save_checkpoint({"weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.ones(3))  # the good one survives


def nan_grads_module():
    from asr.config import Config
    from asr.text import CharTokenizer
    from asr.training.module import CTCModule

    module = CTCModule(Config.from_dict({"model": {"hidden": 8, "layers": 1}}), CharTokenizer())
    module.log = lambda *a, **k: None  # outside a Trainer
    return module


def test_non_finite_gradients_are_skipped_and_counted():
    module = nan_grads_module()
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    module.on_before_optimizer_step(torch.optim.SGD(module.parameters(), lr=0.1))
    assert module.skipped_steps == 0 and all(p.grad is not None for p in module.parameters())
    next(module.parameters()).grad[0] = float("nan")
    module.on_before_optimizer_step(torch.optim.SGD(module.parameters(), lr=0.1))
    assert module.skipped_steps == 1 and all(p.grad is None for p in module.parameters())


def test_run_that_keeps_producing_nan_stops_with_the_likely_cause():
    from asr.training.module import MAX_SKIPPED_IN_A_ROW

    module = nan_grads_module()
    with pytest.raises(ASRError, match="learning rate") as e:
        for _ in range(MAX_SKIPPED_IN_A_ROW):
            for p in module.parameters():
                p.grad = torch.full_like(p, float("inf"))
            module.on_before_optimizer_step(torch.optim.SGD(module.parameters(), lr=0.1))
    assert "labels longer than the subsampled frames" in str(e.value) and "\n" not in str(e.value)


class _ScriptedWER(pl.LightningModule):
    """A tiny model whose validation WER per epoch is given: what best.ckpt keeps is then known."""

    def __init__(self, wers):
        super().__init__()
        self.layer, self.wers = torch.nn.Linear(2, 1), wers

    def training_step(self, batch, batch_idx):
        return self.layer(batch).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val_wer", self.wers[self.current_epoch])

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=2)

    val_dataloader = train_dataloader

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_best_checkpoint_keeps_the_later_model_on_a_tie(tmp_path):
    best = BestCheckpoint(dirpath=tmp_path, filename="best", monitor="val_wer", mode="min", save_top_k=1)
    wers = [0.5, 0.2, 0.3, 0.2, 0.25]  # epochs 1 and 3 tie for the lowest
    trainer = pl.Trainer(
        max_epochs=len(wers),
        callbacks=[best],
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(_ScriptedWER(wers))
    assert best.best_model_path == str(tmp_path / "best.ckpt") and sorted(os.listdir(tmp_path)) == ["best.ckpt"]
    assert torch.load(best.best_model_path, weights_only=False)["epoch"] == 3  # Lightning's own keeps epoch 1


@pytest.mark.parametrize(
    "accumulate,epoch,global_step,expected",
    [
        (1, 1, 13, (1, 3)),  # 10 steps an epoch: 3 batches into epoch 1
        (4, 1, 4, (1, 4)),  # 10 batches, 4 per step: 3 steps an epoch (the last one on 2 batches)
        (4, 1, 5, (1, 8)),
        (4, 1, 3, None),  # the end of epoch 0: epoch 1 starts from its beginning
        (4, 2, 6, None),
    ],
)
def test_resume_point_counts_the_short_last_step_of_an_accumulating_epoch(accumulate, epoch, global_step, expected):
    from asr.config import DataConfig
    from asr.data.loader import SpeechDataModule

    data = SpeechDataModule(DataConfig(), None, None)
    data.load_state_dict({"epoch": epoch, "global_step": global_step, "accumulate": accumulate})
    assert data._resume_point(10) == expected
