"""Run configs: one dataclass per section, the defaults below, YAML files of plain data, and
`key.sub=value` overrides from the command line. An unknown key at any depth is an error that names
the key and the closest valid one: a typo never silently does nothing."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from asr.dims import ModelDims as _Dims  # the one home of every model default
from asr.errors import ASRError, file_error
from asr.schema import closest, from_plain, parse_yaml


@dataclass
class TokenizerConfig:
    kind: str = "char"  # char | bpe | unigram (sentencepiece, learnt from the training transcripts)
    vocab_size: int = 256  # bpe/unigram only
    chars: str | None = None  # char only: the alphabet (default: letters, space, apostrophe)


@dataclass
class DataConfig:
    train: str | list[str] | None = None  # manifest(s) (.jsonl), or a shards.json index to stream from
    val: str | list[str] | None = None
    max_batch_seconds: float = 200.0  # padded audio per batch
    # Round batches down to a multiple of this many utterances: cuDNN's persistent LSTM kernel wants batch % 8 == 0
    # (8 for GPU configs; 1 = off).
    batch_multiple: int = 1
    max_duration: float = 35.0  # longer utterances are left out of training
    num_workers: int = 2
    speed_perturb: list[float] | None = None  # e.g. [0.9, 1.1]
    cache_audio: bool = False  # keep decoded audio in memory (115 MB/hour, 16-bit; needs num_workers: 0)
    license: str | None = None  # the training data's licence, copied into exported model cards


@dataclass
class SpecAugmentConfig:
    freq_masks: int = 2
    freq_width: int = 15  # mel bins, at most
    time_masks: int = 2
    time_width: float = 0.05  # fraction of each utterance, at most


@dataclass
class NoiseConfig:
    snr_db: list[float] = field(default_factory=lambda: [10.0, 30.0])
    prob: float = 0.0  # the share of training utterances that get noise
    kinds: list[str] = field(
        default_factory=lambda: ["white", "pink"]
    )  # drawn per utterance: white | pink | brown | hum | babble


@dataclass
class ReverbConfig:
    prob: float = 0.0  # the share of training utterances heard in a simulated room
    rt60: list[float] = field(default_factory=lambda: [0.2, 0.8])  # reverberation time, seconds
    distance: list[float] = field(default_factory=lambda: [0.5, 3.0])  # talker to microphone, metres
    rooms: int = 200  # impulse responses simulated when training starts (about 10 ms each), drawn per utterance


@dataclass
class ChannelConfig:
    prob: float = 0.0  # share with a random microphone/equaliser response and band limits
    telephone: float = 0.0  # share sent through an 8 kHz mu-law telephone line
    clip: float = 0.0  # share clipped at 20-70% of their peak


@dataclass
class FeaturesConfig:
    # The input chain, part of the model (saved with its weights; meanings and defaults: asr.dims.ModelDims):
    n_mels: int = _Dims.n_mels
    dynamic_range_db: float = _Dims.dynamic_range_db
    taper_ms: float = _Dims.taper_ms
    edge_pad_ms: float = _Dims.edge_pad_ms  # tightly and loosely cut clips then look alike
    normalize: str = _Dims.normalize  # per_utterance keeps the spectral shape (for isolated words)
    # Training augmentation (not part of the model):
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    vtlp: float = 0.0  # max frequency warp, e.g. 0.1: alpha in [0.9, 1.1] per training utterance
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    reverb: ReverbConfig = field(default_factory=ReverbConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)


@dataclass
class ModelConfig:
    # The network's shape (meanings and defaults: asr.dims.ModelDims).
    subsample: str = _Dims.subsample  # stack | conv
    subsample_factor: int = _Dims.subsample_factor
    hidden: int = _Dims.hidden
    layers: int = _Dims.layers
    dropout: float = _Dims.dropout
    merge: str = _Dims.merge  # sum halves the next layer's input weights, as in DeepSpeech 2
    char_ctc_layer: int = _Dims.char_ctc_layer  # what lets large subword vocabularies learn quickly
    char_ctc_weight: float = 0.0  # that head's share of the loss; training only, not part of the model


@dataclass
class CheckpointConfig:
    # last.ckpt is rewritten (atomically) every this many optimizer steps and at every epoch end, so a
    # killed run loses at most that many steps; best.ckpt follows validation WER.
    last_every_n_steps: int = 200
    # Also keep the weights alone of the last N such saves (checkpoints/snapshots/), for
    # `asr average --run DIR --last N`: the mean of a run's last weights usually beats any one of them.
    keep_last: int = 0


@dataclass
class OptimConfig:
    lr: float = 1.5e-3
    weight_decay: float = 0.01
    warmup_steps: int = 300
    final_lr_ratio: float = 0.02  # after the warm-up the LR decays to final_lr_ratio x lr ...
    decay: str = "cosine"  # ... along a half cosine or a straight line (linear)


# Passed to pytorch_lightning.Trainer (any of its arguments), except gradient_clip_val, which the training
# module applies itself (in its NaN check, so that AdamW can run fused). "precision: auto" means 16-mixed on
# GPU; on a CPU with native bf16 (AVX512-BF16/AMX) bf16-mixed where the model's step, timed at the start, is
# faster in it; else fp32 (asr.training.precision).
TRAINER_DEFAULTS = {
    "max_epochs": 30,
    "accelerator": "auto",
    "devices": "auto",
    "num_nodes": 1,
    "precision": "auto",
    "gradient_clip_val": 5.0,
    "log_every_n_steps": 20,
}
TRAINER_SET_BY_ASR = {"callbacks", "logger", "plugins", "default_root_dir", "use_distributed_sampler"}


@dataclass
class Config:
    seed: int = 0
    # Fine-tuning: start from this checkpoint's weights, tokenizer, model shape and input features (they
    # replace this config's); data, augmentation, optimiser and schedule are this run's.
    init_from: str | None = None
    out_dir: str = "runs/default"
    logger: str = "csv"  # csv | tensorboard (needs `pip install tensorboard`)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: dict = field(default_factory=lambda: dict(TRAINER_DEFAULTS))

    def to_dict(self) -> dict:
        """Plain data: what config.yaml and every checkpoint hold."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """Plain data (a YAML file's, or a checkpoint's) -> Config. Missing keys take the defaults;
        an unknown key or a value of the wrong type raises ASRError naming it."""
        config = from_plain(cls, values)
        config.trainer = {**TRAINER_DEFAULTS, **config.trainer}
        _check_trainer_keys(config.trainer)
        return config


# ModelDims fields a run config does not set: the tokenizer's size, and the character head's (a fixed alphabet).
NOT_CONFIG_KEYS = ("vocab_size", "char_vocab_size")


def dims_section(name: str) -> str:
    """The run-config section that sets ModelDims field `name`: "features" (the input chain) or "model"."""
    for section, cls in (("features", FeaturesConfig), ("model", ModelConfig)):
        if name in {f.name for f in dataclasses.fields(cls)}:
            return section
    raise KeyError(f"ModelDims field {name!r} is in no config section")


def _check_trainer_keys(trainer: dict) -> None:
    """trainer.* are pytorch_lightning.Trainer's arguments: a key it does not take is an error here, at
    load time, rather than a crash after the data has been read."""
    import inspect

    import pytorch_lightning as pl

    valid = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"} - TRAINER_SET_BY_ASR
    for key in trainer:
        if key in TRAINER_SET_BY_ASR:
            raise ASRError(f"key 'trainer.{key}': set by asr itself, not by the config")
        if key not in valid:
            raise ASRError(f"unknown key 'trainer.{key}'{closest(key, sorted(valid), 'trainer.')}")


def apply_override(values: dict, override: str) -> None:
    """'model.hidden=512' -> values['model']['hidden'] = 512 (the value is parsed as YAML). Checked,
    like the file's keys, when the Config is built."""
    if "=" not in override:
        raise ASRError(f"override {override!r}: expected key.sub=value")
    key, value = override.split("=", 1)
    *parents, leaf = key.split(".")
    node = values
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ASRError(f"override {override!r}: {p} is not a section")
    node[leaf] = parse_yaml(value)


def load_config(path, overrides=()) -> Config:
    """A YAML run config plus overrides -> Config, with data.train and data.val required."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "config not found")
    try:
        values = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise file_error(path, f"not valid YAML ({str(e).splitlines()[0]})") from None
    for override in overrides:
        apply_override(values, override)
    try:
        config = Config.from_dict(values)
    except ASRError as e:
        raise file_error(path, str(e)) from None
    for key in ("train", "val"):
        if not getattr(config.data, key):
            raise file_error(path, f"data.{key} is not set (a manifest path or a list of them)")
    return config
