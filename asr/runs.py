"""Where a run keeps its files: the one description of the layout that `asr train` writes and `asr average`,
`asr evaluate` and `asr export` read.

    RUN/config.yaml                          the config as trained (asr train)
    RUN/checkpoints/best.ckpt, last.ckpt     best by validation WER; the latest, for --resume
    RUN/checkpoints/snapshots/step-N.ckpt    the weights of the last saves (checkpoint.keep_last)
    RUN/eval-DATA/summary.json               `asr evaluate` reports, which `asr export` puts in the model card
    RUN/logs/                                Lightning's CSV or TensorBoard logs

Plain paths only (no torch): the runtime's `asr evaluate` uses it too.
"""

from pathlib import Path

CHECKPOINTS = "checkpoints"
BEST = "best"  # best.ckpt, kept by validation WER
LOGS = "logs"
REPORT = "summary.json"
DECODING = "decoding.yaml"


def config_path(run) -> Path:
    return Path(run) / "config.yaml"


def checkpoint_dir(run) -> Path:
    return Path(run) / CHECKPOINTS


def last_checkpoint(run) -> Path:
    return checkpoint_dir(run) / "last.ckpt"


def snapshot_dir(run) -> Path:
    return checkpoint_dir(run) / "snapshots"


def snapshot_path(run, step: int) -> Path:
    return snapshot_dir(run) / f"step-{step:08d}.ckpt"  # zero-padded: name order is step order


def snapshots(run) -> list[Path]:
    """The run's snapshots, oldest first."""
    return sorted(snapshot_dir(run).glob("step-*.ckpt"))


def run_of(model) -> Path:
    """The folder a model's reports belong in: RUN for RUN/checkpoints/X.ckpt and RUN/checkpoints/snapshots/X.ckpt;
    the folder holding any other checkpoint (an averaged one written elsewhere, say); an exported folder itself."""
    model = Path(model).resolve()
    if model.is_dir():
        return model
    for run in (model.parent.parent, model.parent.parent.parent):  # RUN/checkpoints/, RUN/checkpoints/snapshots/
        if model.is_relative_to(checkpoint_dir(run)):
            return run
    return model.parent


def decoding_path(model) -> Path:
    """Where `asr tune-lm` writes its settings by default: beside a checkpoint, or inside an exported folder."""
    model = Path(model)
    return (model if model.is_dir() else model.parent) / DECODING


def report_dir(model, data) -> Path:
    """Where `asr evaluate` writes its report on `data` (a manifest or folder) by default."""
    return run_of(model) / f"eval-{Path(data).stem}"


def reports(model) -> list[Path]:
    """Every report (summary.json) in `model`'s run folder, whichever weights they scored."""
    return sorted(run_of(model).glob(f"*/{REPORT}"))
