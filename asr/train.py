"""`asr train`: build the tokenizer, data, module and Lightning Trainer from a config, then fit."""
import logging
import math
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from asr.audio import SAMPLE_RATE
from asr.checkpoint import AtomicCheckpointIO, load_module, read_checkpoint
from asr.data.loader import DurationBatchSampler, SpeechDataModule
from asr.data.manifest import read_manifest
from asr.errors import ASRError
from asr.features import num_frames
from asr.lightning import CTCModule, FollowTimeBudget
from asr.text import build_tokenizer, normalize, tokenizer_from_dict

log = logging.getLogger("asr")


def build_trainer(config: dict, out_dir: Path) -> pl.Trainer:
    resolve_precision(config)  # train() has done it already; this is for other callers
    trainer_cfg = dict(config["trainer"])
    trainer_cfg.pop("gradient_clip_val", None)  # CTCModule clips, in the same pass as its NaN check
    if config["logger"] == "tensorboard":
        logger = pl.loggers.TensorBoardLogger(out_dir, name="logs")
    else:
        logger = pl.loggers.CSVLogger(out_dir, name="logs")
    ckpt_dir = out_dir / "checkpoints"
    best = BestCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_wer", mode="min", save_top_k=1,
                          auto_insert_metric_name=False)
    last = LastCheckpoint(ckpt_dir / "last.ckpt", config["checkpoint"].get("last_every_n_steps"))
    callbacks = [best, last, StreamEpoch(), FollowTimeBudget(), LearningRateMonitor("step")]
    try:
        return pl.Trainer(
            default_root_dir=out_dir, logger=logger, callbacks=callbacks,
            plugins=[AtomicCheckpointIO()],  # a kill mid-write never leaves a torn checkpoint
            use_distributed_sampler=False,  # our duration sampler splits batches across ranks itself
            **trainer_cfg,
        )
    except (TypeError, ValueError, MisconfigurationException) as e:
        raise ASRError(f"config section 'trainer': {e}") from None


def resolve_precision(config: dict, step_seconds=None) -> None:
    """Replace `trainer.precision: auto` in `config` with what auto_precision picks for this machine. Once
    per run: the choice is then saved in config.yaml and every checkpoint, and a resume keeps it.
    `step_seconds(bf16)` times a training step (see model_step_seconds); distributed runs never measure.
    A bf16 precision asked of a CPU that cannot run it becomes 32-true, with a warning, instead of a crash."""
    trainer_cfg = config["trainer"]
    accelerator = trainer_cfg.get("accelerator", "auto")
    if trainer_cfg.get("precision") == "auto":
        trainer_cfg["precision"] = auto_precision(accelerator, None if is_distributed(trainer_cfg) else step_seconds)
    elif str(trainer_cfg.get("precision")).startswith("bf16") and on_cpu(accelerator) and not cpu_runs_bf16():
        log.warning("precision %s: this CPU (%s) cannot run the LSTM in bf16 (oneDNN needs AVX-512); "
                    "training in 32-true instead", trainer_cfg["precision"], torch.backends.cpu.get_cpu_capability())
        trainer_cfg["precision"] = "32-true"


def auto_precision(accelerator: str = "auto", step_seconds=None) -> str:
    """16-mixed on GPU: under bf16 autocast cuDNN's LSTM silently runs in fp16 without any loss
    scaling, so fp16 with loss scaling is the safe mixed precision for this model. On a CPU with
    native bf16 dot products (AVX512-BF16 or AMX), bf16-mixed if it trains this model faster here, which
    neither the CPU's flags nor one LSTM layer can tell: on an Intel Xeon with AMX bf16 made the demo's
    step 1.32x slower and FSDD's 1.3x faster (BENCHMARKS.md). So `step_seconds(bf16)`, the model's own
    steps on batches of the run's shapes, decides; without it (distributed runs, whose ranks must not
    decide differently) fp32. Elsewhere bf16 is emulated: fp32."""
    if on_gpu(accelerator):
        return "16-mixed"
    native_bf16 = cpu_runs_bf16() and any(getattr(torch.cpu, name, lambda: False)()
                                          for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    if not (native_bf16 and step_seconds):
        return "32-true"
    seconds = {False: [], True: []}
    for round_ in range(3):  # interleaved, so that a busy moment of the machine hits both
        if round_ == 2 and seconds[False][1] + seconds[True][1] > 10:  # a big model: two rounds will do
            break
        for bf16 in (False, True):
            seconds[bf16].append(step_seconds(bf16))
    fp32, bf16 = (min(seconds[b][1:]) for b in (False, True))  # the first pass builds oneDNN's primitives
    log.info("precision auto: training steps of this run's batch shapes take %.0f ms in fp32, %.0f ms in bf16 "
             "on this CPU", 1000 * fp32, 1000 * bf16)
    return "bf16-mixed" if bf16 < 0.95 * fp32 else "32-true"  # a tie goes to fp32, the exact one


def on_gpu(accelerator: str) -> bool:
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def on_cpu(accelerator: str) -> bool:
    if accelerator == "auto":
        return not (torch.cuda.is_available() or torch.backends.mps.is_available())
    return accelerator == "cpu"


def cpu_runs_bf16() -> bool:
    """Whether oneDNN can build a bf16 LSTM here: natively (AVX512-BF16, AMX) or emulated on AVX-512. On an
    AVX2-only CPU it cannot ('could not create a primitive descriptor for the LSTM forward propagation')."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def is_distributed(trainer_cfg: dict) -> bool:
    """More than one process: launched by torchrun/SLURM, or asked of Lightning in the config."""
    return (int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(trainer_cfg.get("num_nodes", 1)) > 1
            or str(trainer_cfg.get("devices", "auto")) not in ("1", "auto"))


def model_step_seconds(model: torch.nn.Module, n_mels: int, shapes: list[tuple[int, int]], bf16: bool) -> float:
    """Seconds for forward+backward passes of `model` on random features of each (batch, frames) in `shapes`,
    batches of the run's own shapes (probe_batches). One fixed shape misleads: it favoured bf16 by 1.2x on
    a Xeon where bf16 trained the demo 1.2x slower. Leaves no gradients and no trace in the random stream."""
    def step(batch, frames):
        feats, lengths = torch.randn(batch, frames, n_mels), torch.full((batch,), frames)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(feats, lengths)
        logits.float().sum().backward()
        return time.perf_counter() - start

    with torch.random.fork_rng(devices=[]):  # dropout's draws: the run's seeded stream is left as it was
        seconds = sum(step(batch, frames) for batch, frames in shapes)
    model.zero_grad(set_to_none=True)
    return seconds


def probe_batches(durations: list[float], max_batch_seconds: float, n: int = 8) -> list[tuple[int, int]]:
    """(utterances, feature frames) of `n` batches the duration sampler makes of `durations`, spread over
    its batches from the fewest frames to the most (a step takes about 0.1-0.3 s on a CPU: auto_precision's
    six passes over them take about 8 s)."""
    batches = DurationBatchSampler(durations, max_batch_seconds).batches
    shapes = sorted(((len(b), int(num_frames(torch.tensor(int(max(durations[i] for i in b) * SAMPLE_RATE)))))
                     for b in batches), key=lambda shape: shape[0] * shape[1])
    n = min(n, len(shapes))
    return [shapes[round(k * (len(shapes) - 1) / max(n - 1, 1))] for k in range(n)]


class BestCheckpoint(ModelCheckpoint):
    """best.ckpt by validation WER, where a tie goes to the later model. A tie says the validation set
    cannot tell the two apart, and the later one has trained longer, at a lower LR. (Lightning keeps the
    earlier: on FSDD, whose dev speakers are seen in training, dev WER reaches 0% around epoch 60 of 100
    and best.ckpt was then the first 0% model, not the finished one.)"""

    def check_monitor_top_k(self, trainer, current=None):
        if current is None or self.save_top_k != 1 or not self.best_k_models:
            return super().check_monitor_top_k(trainer, current)
        tied = bool(current == self.best_k_models[self.kth_best_model_path])
        # Every rank computes the same validation WER (synced), so the decision is unanimous.
        return tied or super().check_monitor_top_k(trainer, current)


class LastCheckpoint(pl.Callback):
    """Keeps `last.ckpt` current: every `every_n_steps` optimizer steps and at every epoch end.

    One callback owns the file. (Two ModelCheckpoints with save_last would each version it:
    last.ckpt and last-v1.ckpt.) Writes go through the trainer, so they are rank-0 only and atomic."""

    def __init__(self, path: Path, every_n_steps: int | None):
        self.path, self.every = path, int(every_n_steps or 0)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.every and trainer.global_step % self.every == 0 and trainer.global_step != getattr(self, "_saved", -1):
            self._save(trainer)

    def on_train_epoch_end(self, trainer, module):  # after the epoch's validation in Lightning 2.x
        self._save(trainer)

    def _save(self, trainer):
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: optimizer, schedule, loops
        self._saved = trainer.global_step


class StreamEpoch(pl.Callback):
    """Tells a streamed training set (WebDataset shards) which epoch starts, for its shard order;
    Lightning does this itself only for samplers, and a stream has none."""

    def on_train_epoch_start(self, trainer, module):
        dataset = getattr(trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(trainer.current_epoch)


def train(config: dict, resume: bool = False) -> Path:
    """Train per `config`; returns the best checkpoint's path."""
    pl.seed_everything(config["seed"], workers=True, verbose=False)
    out_dir = Path(config["out_dir"])
    last = out_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise ASRError(f"{last}: no checkpoint to resume from")
    if resume:  # the run goes on with the tokenizer and model its checkpoint was trained with
        saved = read_checkpoint(last)["asr"]  # weights only: a file that carries code is refused here
        adopt_checkpoint_model(config, saved["config"])
        if config["trainer"].get("precision") == "auto":  # the run goes on in the precision it chose at its start
            config["trainer"]["precision"] = saved["config"]["trainer"].get("precision", "auto")
        module = CTCModule(config, tokenizer_from_dict(saved["tokenizer"]))
    elif config.get("init_from"):
        module = pretrained_module(config)
    else:
        module = CTCModule(config, make_tokenizer(config))
    data = SpeechDataModule(config["data"], module.tokenizer, module.model.subsample.output_lengths,
                            seed=config["seed"])
    if config["trainer"].get("precision") == "auto":  # decided once, then saved in config.yaml and every checkpoint
        data.setup("fit")
        rows = data.train_rows  # None when streaming shards: no durations at hand, demo-like batches stand in
        shapes = (probe_batches([r["duration"] for r in rows], config["data"]["max_batch_seconds"]) if rows
                  else [(6, 250 + 30 * k) for k in range(8)])
        resolve_precision(config, lambda bf16: model_step_seconds(module.model, config["features"]["n_mels"], shapes,
                                                                  bf16))
    resolve_precision(config)  # a bf16 this CPU cannot run becomes fp32 before config.yaml records the run
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
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


# What the network's input is made of, with the value a checkpoint from before the key existed was
# trained with: part of the model, like its weights.
INPUT_FEATURES = {"n_mels": 80, "dynamic_range_db": None, "taper_ms": 0.0, "edge_pad_ms": 0.0, "normalize": "per_bin"}


def adopt_checkpoint_model(config: dict, saved: dict) -> None:
    """Make `config` describe the model of a checkpoint whose config is `saved` (tokenizer, model
    shape, input features): those must match its weights, whatever the run's YAML says."""
    model = {**saved["model"], "dropout": config["model"].get("dropout", saved["model"].get("dropout"))}
    changed = [key for key, theirs in (("tokenizer", saved["tokenizer"]), ("model", model))
               if config.get(key) != theirs]
    for key, legacy in INPUT_FEATURES.items():
        theirs = saved["features"].get(key, legacy)
        if config["features"].get(key) != theirs:
            changed.append(f"features.{key}")
        config["features"][key] = theirs
    config["tokenizer"], config["model"] = saved["tokenizer"], model  # dropout stays this run's: no weights
    if changed:
        log.warning("using the checkpoint's %s, not this config's", ", ".join(changed))


def pretrained_module(config: dict) -> CTCModule:
    """Fine-tuning: the weights of `init_from` (a checkpoint from `asr train`), with this run's data,
    augmentation, optimiser and schedule, all starting afresh."""
    path = Path(config["init_from"])
    source = load_module(path)  # validated: a clear one-line error for a missing or mismatched file
    adopt_checkpoint_model(config, source.config)
    module = CTCModule(config, source.tokenizer)
    module.model.load_state_dict(source.model.state_dict())
    log.info("initialised from %s (%s tokenizer, %d tokens)", path, source.tokenizer.kind, source.tokenizer.vocab_size)
    return module
