"""`asr train`: build the tokenizer, data, module and Lightning Trainer from a config, then fit."""
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from asr.data.loader import SpeechDataModule
from asr.data.manifest import read_manifest
from asr.errors import ASRError
from asr.lightning import CTCModule
from asr.text import build_tokenizer, normalize, tokenizer_from_dict

log = logging.getLogger("asr")


def build_trainer(config: dict, out_dir: Path) -> pl.Trainer:
    trainer_cfg = dict(config["trainer"])
    if trainer_cfg.get("precision") == "auto":
        # fp16 autocast with loss scaling on GPU: under bf16 autocast cuDNN's LSTM silently runs in
        # fp16 without any loss scaling, so 16-mixed is the safe mixed precision for this model.
        trainer_cfg["precision"] = "16-mixed" if torch.cuda.is_available() else "32-true"
    if config["logger"] == "tensorboard":
        logger = pl.loggers.TensorBoardLogger(out_dir, name="logs")
    else:
        logger = pl.loggers.CSVLogger(out_dir, name="logs")
    checkpoints = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best", monitor="val_wer", mode="min",
                                  save_last=True, save_top_k=1, auto_insert_metric_name=False)
    try:
        return pl.Trainer(
            default_root_dir=out_dir, logger=logger, callbacks=[checkpoints, LearningRateMonitor("step")],
            use_distributed_sampler=False,  # our duration sampler splits batches across ranks itself
            **trainer_cfg,
        )
    except (TypeError, ValueError, MisconfigurationException) as e:
        raise ASRError(f"config section 'trainer': {e}") from None


def train(config: dict, resume: bool = False) -> Path:
    """Train per `config`; returns the best checkpoint's path."""
    pl.seed_everything(config["seed"], workers=True, verbose=False)
    out_dir = Path(config["out_dir"])
    last = out_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise ASRError(f"{last}: no checkpoint to resume from")
    tokenizer = resumed_tokenizer(last) if resume else make_tokenizer(config)
    module = CTCModule(config, tokenizer)
    data = SpeechDataModule(config["data"], tokenizer, module.model.subsample.output_lengths, seed=config["seed"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    trainer = build_trainer(config, out_dir)
    n_params = sum(p.numel() for p in module.parameters())
    log.info("model: %.2fM parameters; logs and checkpoints in %s", n_params / 1e6, out_dir)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    best = trainer.checkpoint_callback.best_model_path
    return Path(best) if best else last


def make_tokenizer(config: dict):
    """Characters, or sentencepiece subwords learnt from the training transcripts."""
    texts = []
    if config["tokenizer"].get("kind", "char") != "char":
        paths = config["data"]["train"] if isinstance(config["data"]["train"], list) else [config["data"]["train"]]
        texts = [normalize(row["text"]) for p in paths for row in read_manifest(p)]
    try:
        tokenizer = build_tokenizer(config["tokenizer"], texts)
    except (ValueError, RuntimeError) as e:
        raise ASRError(f"config section 'tokenizer': {e}") from None
    log.info("tokenizer: %s, %d tokens (with blank)", tokenizer.kind, tokenizer.vocab_size)
    return tokenizer


def resumed_tokenizer(last: Path):
    """A resumed run keeps the tokenizer its checkpoint was trained with."""
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    return tokenizer_from_dict(ckpt["asr"]["tokenizer"])
