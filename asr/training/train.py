"""`asr train`: build the tokenizer, data, module and Lightning Trainer from a config, then fit."""

import logging
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from asr.checkpoint import load_model_and_tokenizer, read_checkpoint
from asr.config import NOT_CONFIG_KEYS, Config, dims_section
from asr.data.loader import SpeechDataModule
from asr.data.manifest import read_manifest
from asr.errors import ASRError, file_error
from asr.model import ModelDims
from asr.runs import BEST, LOGS, checkpoint_dir, config_path, last_checkpoint
from asr.text import build_tokenizer, normalize, tokenizer_from_dict
from asr.training.callbacks import AtomicCheckpointIO, BestCheckpoint, FollowTimeBudget, LastCheckpoint, StreamEpoch
from asr.training.module import CTCModule
from asr.training.precision import model_step_seconds, probe_batches, resolve_precision

log = logging.getLogger("asr")


def build_trainer(config: Config, out_dir: Path) -> pl.Trainer:
    resolve_precision(config)  # train() has done it already; this is for other callers
    trainer_cfg = dict(config.trainer)
    trainer_cfg.pop("gradient_clip_val", None)  # CTCModule clips, in the same pass as its NaN check
    if config.logger == "tensorboard":
        logger = pl.loggers.TensorBoardLogger(out_dir, name=LOGS)
    else:
        logger = pl.loggers.CSVLogger(out_dir, name=LOGS)
    best = BestCheckpoint(
        dirpath=checkpoint_dir(out_dir),
        filename=BEST,
        monitor="val_wer",
        mode="min",
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    last = LastCheckpoint(out_dir, config.checkpoint.last_every_n_steps, config.checkpoint.keep_last)
    callbacks = [best, last, StreamEpoch(), FollowTimeBudget(), LearningRateMonitor("step")]
    try:
        return pl.Trainer(
            default_root_dir=out_dir,
            logger=logger,
            callbacks=callbacks,
            plugins=[AtomicCheckpointIO()],  # a kill mid-write never leaves a torn checkpoint
            use_distributed_sampler=False,  # our duration sampler splits batches across ranks itself
            **trainer_cfg,
        )
    except (TypeError, ValueError, MisconfigurationException) as e:
        raise ASRError(f"config section 'trainer': {e}") from None


def train(config: Config, resume: bool = False) -> Path:
    """Train per `config`; returns the best checkpoint's path."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    out_dir = Path(config.out_dir)
    last = last_checkpoint(out_dir)
    if resume and not last.is_file():
        raise ASRError(f"{last}: no checkpoint to resume from")
    if resume:  # the run goes on with the tokenizer and model its checkpoint was trained with
        saved = read_checkpoint(last)["asr"]  # weights only: a file that carries code is refused here
        adopt_checkpoint_model(config, last, saved)
        if config.trainer.get("precision") == "auto":  # the run goes on in the precision it chose at its start
            config.trainer["precision"] = saved["config"]["trainer"].get("precision", "auto")
        module = CTCModule(config, tokenizer_from_dict(saved["tokenizer"]))
    elif config.init_from:
        module = pretrained_module(config)
    else:
        module = CTCModule(config, make_tokenizer(config))
    data = SpeechDataModule(
        config.data, module.tokenizer, module.model.network.subsample.output_lengths, seed=config.seed
    )
    if config.trainer.get("precision") == "auto":  # decided once, then saved in config.yaml and every checkpoint
        data.setup("fit")
        rows = data.train_rows  # None when streaming shards: no durations at hand, demo-like batches stand in
        shapes = (
            probe_batches(
                [r["duration"] for r in rows], config.data.max_batch_seconds, multiple=config.data.batch_multiple
            )
            if rows
            else [(6, 250 + 30 * k) for k in range(8)]
        )
        resolve_precision(
            config, lambda bf16: model_step_seconds(module.model.network, config.features.n_mels, shapes, bf16)
        )
    resolve_precision(config)  # a bf16 this CPU cannot run becomes fp32 before config.yaml records the run
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path(out_dir).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    trainer = build_trainer(config, out_dir)
    n_params = sum(p.numel() for p in module.parameters())
    log.info("model: %.2fM parameters; logs and checkpoints in %s", n_params / 1e6, out_dir)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Lightning leaves the process group up; gloo's threads then abort the interpreter at exit.
        torch.distributed.destroy_process_group()
    if trainer.is_global_zero:
        log.info(how_it_ended(trainer))
    best = trainer.checkpoint_callback.best_model_path
    return Path(best) if best else last


def how_it_ended(trainer: pl.Trainer) -> str:
    """Where training stopped and how good the kept checkpoints were, in one line. Lightning's own last
    word can mislead: a run stopped by trainer.max_time in its third epoch still says "`max_epochs=3` reached"."""
    line = f"training ended at step {trainer.global_step:,}"
    planned = trainer.estimated_stepping_batches  # inf when only the clock limits the run
    if math.isfinite(planned):
        line += f" of {int(planned):,}"
    timer = next((c for c in trainer.callbacks if isinstance(c, pl.callbacks.Timer)), None)
    if timer is not None and timer.time_remaining() is not None and timer.time_remaining() <= 0:
        line += f", stopped by trainer.max_time after {minutes_seconds(timer.time_elapsed())}"
    best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    if best is not None:
        line += f"; val WER {100 * float(best):.1f}% in best.ckpt"
    if "val_wer" in trainer.callback_metrics:
        line += f", {100 * float(trainer.callback_metrics['val_wer']):.1f}% at the last validation"
    return line


def minutes_seconds(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s"


def make_tokenizer(config: Config):
    """Characters, or sentencepiece subwords learnt from the training transcripts."""
    texts = []
    if config.tokenizer.kind != "char":
        paths = config.data.train if isinstance(config.data.train, list) else [config.data.train]
        texts = [normalize(row["text"]) for p in paths for row in read_manifest(p)]
    try:
        tokenizer = build_tokenizer(vars(config.tokenizer), texts)
    except (ValueError, RuntimeError) as e:
        raise ASRError(f"config section 'tokenizer': {e}") from None
    log.info("tokenizer: %s, %d tokens (with blank)", tokenizer.kind, tokenizer.vocab_size)
    return tokenizer


def adopt_checkpoint_model(config: Config, path, info: dict) -> None:
    """Make `config` describe the model of the checkpoint at `path` (its "asr" dict `info`): its tokenizer and
    every ModelDims field must match its weights, whatever the run's YAML says. Dropout and the character
    head's loss weight stay this run's: they hold no weights."""
    saved, dims = saved_config(path, info), ModelDims.from_dict(info["dims"], str(path))
    changed = ["tokenizer"] if config.tokenizer != saved.tokenizer else []
    config.tokenizer = saved.tokenizer
    for name in ModelDims.field_names():
        if name in NOT_CONFIG_KEYS or name == "dropout":  # set by the tokenizer; dropout holds no weights
            continue
        key = dims_section(name)
        if getattr(getattr(config, key), name) != getattr(dims, name):
            changed.append(f"{key}.{name}")
            setattr(getattr(config, key), name, getattr(dims, name))
    if changed:
        log.warning("using the checkpoint's %s, not this config's", ", ".join(changed))


def saved_config(path, info: dict) -> Config:
    """The run config inside a checkpoint written by `asr train` (fine-tuning and resuming need it)."""
    if not info.get("config"):
        raise file_error(
            path,
            "holds no training config (not written by `asr train`): it can be loaded "
            "for inference, not fine-tuned or resumed",
        )
    try:
        return Config.from_dict(info["config"])
    except ASRError as e:
        raise file_error(path, f"its training config is not one this version reads ({e})") from None


def pretrained_module(config: Config) -> CTCModule:
    """Fine-tuning: the weights of `init_from` (a checkpoint from `asr train`), with this run's data,
    augmentation, optimiser and schedule, all starting afresh."""
    path = Path(config.init_from)
    model, tokenizer, info = load_model_and_tokenizer(path)  # validated: one clear line for a bad file
    adopt_checkpoint_model(config, path, info)
    module = CTCModule(config, tokenizer)
    module.model.load_state_dict(model.state_dict())
    log.info("initialised from %s (%s tokenizer, %d tokens)", path, tokenizer.kind, tokenizer.vocab_size)
    return module
