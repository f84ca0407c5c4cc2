"""The LR schedule: warm-up, cosine or linear decay by steps, and decay that follows trainer.max_time."""

import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from conftest import bare_trainer

from asr.config import Config
from asr.errors import ASRError
from asr.text import build_tokenizer
from asr.training.callbacks import FollowTimeBudget
from asr.training.module import CTCModule, WarmupDecay
from asr.training.train import how_it_ended


def test_warmup_then_cosine_to_final_by_steps():
    schedule = WarmupDecay(warmup=10, total=110, final=0.1)
    assert math.isclose(schedule(0), 0.1) and math.isclose(schedule(9), 1.0)
    assert math.isclose(schedule(10), 1.0)
    assert math.isclose(schedule(60), 0.1 + 0.9 * 0.5)  # half way through the decay
    assert math.isclose(schedule(110), 0.1) and math.isclose(schedule(500), 0.1)


def test_linear_decay_is_a_straight_line_to_final():
    schedule = WarmupDecay(warmup=10, total=110, final=0.1, shape="linear")
    assert math.isclose(schedule(10), 1.0) and math.isclose(schedule(110), 0.1)
    assert math.isclose(schedule(35), 0.1 + 0.9 * 0.75) and math.isclose(schedule(60), 0.1 + 0.9 * 0.5)
    schedule.time_progress = 0.75  # the clock is ahead of the steps: it sets the pace, as for cosine
    assert math.isclose(schedule(20), 0.1 + 0.9 * 0.25)


def test_time_progress_takes_over_only_when_ahead_of_the_steps():
    schedule = WarmupDecay(warmup=10, total=110, final=0.1)
    schedule.time_progress = 0.25
    assert math.isclose(schedule(85), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.75)))  # steps ahead
    assert math.isclose(schedule(20), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))  # time ahead
    schedule.time_progress = 1.0
    assert math.isclose(schedule(20), 0.1)
    assert math.isclose(schedule(5), 0.6)  # warm-up is by steps only


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.lrs = []

    def training_step(self, batch, batch_idx):
        self.lrs.append(self.optimizers().param_groups[0]["lr"])
        return self.layer(batch).pow(2).mean()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(64, 4), batch_size=8)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=1.0)
        schedule = WarmupDecay(warmup=5, total=10**9, final=0.05)  # by steps it would barely decay
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def test_a_run_stopped_by_max_time_ends_at_the_final_lr(tmp_path):
    module = _Tiny()
    trainer = bare_trainer(tmp_path, max_time={"seconds": 2}, max_epochs=-1, callbacks=[FollowTimeBudget()])
    trainer.fit(module)
    lrs = module.lrs[5:]  # after warm-up
    assert len(lrs) > 50, "the time budget should allow many tiny steps"
    assert lrs[-1] < 0.1, f"last LR {lrs[-1]:.3f}: the decay did not follow the 2 s budget"
    assert lrs[len(lrs) // 2] > 0.2  # and it decayed gradually, not at once
    assert all(b <= a + 1e-12 for a, b in zip(lrs, lrs[1:]))
    # Lightning's own message would name max_epochs; ours says the clock stopped it, and where.
    assert (
        how_it_ended(trainer)
        == f"training ended at step {trainer.global_step:,}, stopped by trainer.max_time after 0 min 02 s"
    )


def test_the_end_line_says_steps_without_a_clock(tmp_path):
    trainer = bare_trainer(tmp_path, max_steps=7)
    trainer.fit(_Tiny())
    assert how_it_ended(trainer) == "training ended at step 7 of 7"


def test_optim_decay_reaches_the_schedule_and_rejects_unknown_shapes():
    def module(decay):
        config = Config.from_dict({"optim": {"decay": decay, "warmup_steps": 10}, "model": {"hidden": 8, "layers": 1}})
        return CTCModule(config, build_tokenizer({"kind": "char"}, []))

    linear = module("linear")
    linear._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(), estimated_stepping_batches=110)
    schedule = linear.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert schedule.shape == "linear" and math.isclose(schedule(60), 0.02 + 0.98 * 0.5)
    with pytest.raises(ASRError, match="'optim.decay': expected cosine or linear, got 'step'"):
        module("step")


def test_a_run_limited_only_by_the_clock_decays_by_the_clock():
    """max_epochs: -1 with max_time: Lightning estimates infinitely many steps (this used to crash)."""
    module = CTCModule(Config.from_dict({"model": {"hidden": 8, "layers": 1}}), build_tokenizer({"kind": "char"}, []))
    module.trainer = SimpleNamespace(precision_plugin=SimpleNamespace(), estimated_stepping_batches=float("inf"))
    schedule = module.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    warmup = Config().optim.warmup_steps
    assert math.isclose(schedule(warmup + 10**6), 1.0)  # no step count to decay by
    schedule.time_progress = 1.0
    assert math.isclose(schedule(warmup + 10), Config().optim.final_lr_ratio)
