"""Lightning callbacks and the checkpoint writer of `asr train`: best.ckpt by validation WER, last.ckpt
for resuming, the LR decay that follows a time budget, the epoch of streamed shards."""

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins import TorchCheckpointIO

from asr.checkpoint import save_atomically, write_checkpoint
from asr.runs import last_checkpoint, snapshot_path, snapshots
from asr.training.module import WarmupDecay


class BestCheckpoint(ModelCheckpoint):
    """best.ckpt by validation WER, where a tie goes to the later model. A tie says the validation set
    cannot tell the two apart, and the later one has trained longer, at a lower LR. (Lightning keeps the
    earlier: on FSDD, whose dev speakers are seen in training, dev WER reaches 0% around epoch 60 of 100
    and best.ckpt was then the first 0% model, not the finished one.)"""

    def check_monitor_top_k(self, trainer, current=None):  # public ModelCheckpoint API; tests/test_resume.py pins it
        if current is None or self.save_top_k != 1 or not self.best_k_models:
            return super().check_monitor_top_k(trainer, current)
        tied = bool(current == self.best_k_models[self.kth_best_model_path])
        # Every rank computes the same validation WER (synced), so the decision is unanimous.
        return tied or super().check_monitor_top_k(trainer, current)


class LastCheckpoint(pl.Callback):
    """Keeps `last.ckpt` current: every `every_n_steps` optimizer steps and at every epoch end; with
    `keep_last`, also the weights alone of the last `keep_last` of those saves, in snapshots/ beside it.

    One callback owns the file. (Two ModelCheckpoints with save_last would each version it:
    last.ckpt and last-v1.ckpt.) Writes go through the trainer, so they are rank-0 only and atomic."""

    def __init__(self, run: Path, every_n_steps: int | None, keep_last: int = 0):
        self.run, self.path = run, last_checkpoint(run)
        self.every, self.keep_last = int(every_n_steps or 0), keep_last

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.every and trainer.global_step % self.every == 0 and trainer.global_step != getattr(self, "_saved", -1):
            self._save(trainer, module)

    def on_train_epoch_end(self, trainer, module):  # after the epoch's validation in Lightning 2.x: always saved,
        self._save(trainer, module)  # so that last.ckpt holds that validation's state

    def _save(self, trainer, module):
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: optimizer, schedule, loops
        new_weights = trainer.global_step != getattr(self, "_saved", -1)
        self._saved = trainer.global_step
        if self.keep_last and new_weights and trainer.is_global_zero:
            write_checkpoint(
                snapshot_path(self.run, trainer.global_step), module.model, module.tokenizer, module.config.to_dict()
            )
            for old in snapshots(self.run)[: -self.keep_last]:
                old.unlink()


class StreamEpoch(pl.Callback):
    """Tells a streamed training set (WebDataset shards) which epoch starts, for its shard order;
    Lightning does this itself only for samplers, and a stream has none."""

    def on_train_epoch_start(self, trainer, module):
        dataset = getattr(trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(trainer.current_epoch)


class FollowTimeBudget(pl.Callback):
    """Tells each WarmupDecay schedule what fraction of trainer.max_time has been used (Lightning's
    Timer counts validation and carries over a resume). Does nothing without max_time."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        timer = next((c for c in trainer.callbacks if isinstance(c, pl.callbacks.Timer)), None)
        remaining = timer.time_remaining() if timer is not None else None
        if remaining is None:
            return
        elapsed = timer.time_elapsed()
        for config in trainer.lr_scheduler_configs:
            for schedule in getattr(config.scheduler, "lr_lambdas", []):
                if isinstance(schedule, WarmupDecay):
                    schedule.time_progress = min(1.0, elapsed / max(elapsed + remaining, 1e-9))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made crash-safe (asr.checkpoint.save_atomically): a kill at any
    moment leaves either the old checkpoint or the new one, never a torn file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        save_atomically(checkpoint, path)
