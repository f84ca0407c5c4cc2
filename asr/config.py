"""Run configs: YAML files of plain data, defaults below, `key.sub=value` overrides from the CLI."""
import copy
import re
from pathlib import Path

import yaml

from asr.errors import ASRError, file_error

DEFAULTS = {
    "seed": 0,
    # Fine-tuning: start from this checkpoint's weights, tokenizer, model shape and input features (they
    # replace this config's: asr.train.adopt_checkpoint_model); data, augmentation, optimiser, schedule are this run's.
    "init_from": None,
    "out_dir": "runs/default",
    "logger": "csv",  # csv | tensorboard (needs `pip install tensorboard`)
    "tokenizer": {"kind": "char"},
    "data": {"train": None, "val": None, "max_batch_seconds": 200.0, "max_duration": 35.0, "num_workers": 2,
             "speed_perturb": None,  # e.g. [0.9, 1.1]
             "cache_audio": False},  # keep decoded audio in memory (115 MB/hour, 16-bit; with num_workers: 0)
    "features": {"n_mels": 80,
                 "dynamic_range_db": 80.0,  # log floor below each utterance's peak (None: the old fixed floor)
                 "taper_ms": 10.0,  # fade each utterance's edges: a clip cut mid-sound otherwise ends in a click
                 # Silence added around every utterance (rounded up to whole output frames), which the network
                 # hears and CTC does not score: tightly and loosely cut clips then look alike (FSDD: RESULTS.md).
                 "edge_pad_ms": 0.0,
                 # per_bin: each mel bin to zero mean and unit variance over the utterance (CMVN); per_utterance:
                 # one mean and variance for all bins, which keeps the spectral shape (for isolated words).
                 "normalize": "per_bin",
                 "specaugment": {"freq_masks": 2, "freq_width": 15, "time_masks": 2, "time_width": 0.05},
                 "vtlp": 0.0,  # max frequency warp, e.g. 0.1: alpha in [0.9, 1.1] per training utterance
                 "noise": {"snr_db": [10.0, 30.0], "prob": 0.0}},  # white/pink noise on `prob` of the utterances
    # char_ctc_layer > 0 adds a character CTC head on that LSTM layer, trained with weight char_ctc_weight
    # beside the main head (hierarchical CTC): what lets large subword vocabularies learn quickly.
    # merge: how a layer joins its two directions, concat (2H values) or sum (H: the next layer's input
    # weights halve, as in DeepSpeech 2).
    "model": {"subsample": "stack", "subsample_factor": 4, "hidden": 320, "layers": 3, "dropout": 0.1,
              "char_ctc_layer": 0, "char_ctc_weight": 0.0, "merge": "concat"},
    # last.ckpt is rewritten (atomically) every `last_every_n_steps` optimizer steps and at every epoch
    # end, so a killed run loses at most that many steps; best.ckpt follows validation WER.
    "checkpoint": {"last_every_n_steps": 200},
    # After the warm-up the LR decays to final_lr_ratio x lr along a half cosine or a straight line (`decay`).
    "optim": {"lr": 1.5e-3, "weight_decay": 0.01, "warmup_steps": 300, "final_lr_ratio": 0.02, "decay": "cosine"},
    # Passed to pytorch_lightning.Trainer, except gradient_clip_val, which CTCModule applies itself (in its NaN
    # check, so that AdamW can run fused); "precision: auto" means 16-mixed on GPU, on a CPU with native bf16
    # (AVX512-BF16/AMX) bf16-mixed where the model's step, timed at the start, is faster in it, else fp32
    # (asr.train.auto_precision).
    "trainer": {"max_epochs": 30, "accelerator": "auto", "devices": "auto", "num_nodes": 1, "precision": "auto",
                "gradient_clip_val": 5.0, "log_every_n_steps": 20},
}


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `3e-4` (no dot) as a string; configs mean a number. Same resolver, wider float."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$"),
    list("-+0123456789."))


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_override(config: dict, override: str) -> None:
    """'model.hidden=512' -> config['model']['hidden'] = 512 (the value is parsed as YAML)."""
    if "=" not in override:
        raise ASRError(f"override {override!r}: expected key.sub=value")
    key, value = override.split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ASRError(f"override {override!r}: {p} is not a section")
    node[leaf] = parse_yaml(value)


def load_config(path, overrides=()) -> dict:
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "config not found")
    try:
        user = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise file_error(path, f"not valid YAML ({str(e).splitlines()[0]})") from None
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        raise file_error(path, f"unknown config section(s): {', '.join(sorted(unknown))}")
    config = merge(DEFAULTS, user)
    for override in overrides:
        apply_override(config, override)
    for key in ("train", "val"):
        if not config["data"].get(key):
            raise file_error(path, f"data.{key} is not set (a manifest path or a list of them)")
    return config
