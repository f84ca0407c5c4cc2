"""Which precision a run trains in (`trainer.precision: auto`): decided once, at the start of a run, by
the hardware and, on a CPU with native bf16, by timing the model's own training steps."""

import logging
import os
import time

import torch

from asr.audio import SAMPLE_RATE
from asr.config import Config
from asr.features import num_frames
from asr.packing import pack_by_duration

log = logging.getLogger("asr")


def resolve_precision(config: Config, step_seconds=None) -> None:
    """Replace `trainer.precision: auto` in `config` with what auto_precision picks for this machine. Once
    per run: the choice is then saved in config.yaml and every checkpoint, and a resume keeps it.
    `step_seconds(bf16)` times a training step (see model_step_seconds); distributed runs never measure.
    A bf16 precision asked of a CPU that cannot run it becomes 32-true, with a warning, instead of a crash."""
    trainer_cfg = config.trainer
    accelerator = trainer_cfg.get("accelerator", "auto")
    if trainer_cfg.get("precision") == "auto":
        trainer_cfg["precision"] = auto_precision(accelerator, None if is_distributed(trainer_cfg) else step_seconds)
    elif str(trainer_cfg.get("precision")).startswith("bf16") and on_cpu(accelerator) and not cpu_runs_bf16():
        log.warning(
            "precision %s: this CPU (%s) cannot run the LSTM in bf16 (oneDNN needs AVX-512); "
            "training in 32-true instead",
            trainer_cfg["precision"],
            torch.backends.cpu.get_cpu_capability(),
        )
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
    native_bf16 = cpu_runs_bf16() and any(
        getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )
    if not (native_bf16 and step_seconds):
        return "32-true"
    seconds = {False: [], True: []}
    for round_ in range(3):  # interleaved, so that a busy moment of the machine hits both
        if round_ == 2 and seconds[False][1] + seconds[True][1] > 10:  # a big model: two rounds will do
            break
        for bf16 in (False, True):
            seconds[bf16].append(step_seconds(bf16))
    fp32, bf16 = (min(seconds[b][1:]) for b in (False, True))  # the first pass builds oneDNN's primitives
    log.info(
        "precision auto: training steps of this run's batch shapes take %.0f ms in fp32, %.0f ms in bf16 on this CPU",
        1000 * fp32,
        1000 * bf16,
    )
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
    return (
        int(os.environ.get("WORLD_SIZE", "1")) > 1
        or int(trainer_cfg.get("num_nodes", 1)) > 1
        or str(trainer_cfg.get("devices", "auto")) not in ("1", "auto")
    )


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


def probe_batches(
    durations: list[float], max_batch_seconds: float, n: int = 8, multiple: int = 1
) -> list[tuple[int, int]]:
    """(utterances, feature frames) of `n` batches the duration sampler makes of `durations` (with the
    run's data.batch_multiple), spread over its batches from the fewest frames to the most (a step takes
    about 0.1-0.3 s on a CPU: auto_precision's six passes over them take about 8 s)."""
    batches = pack_by_duration(durations, max_batch_seconds, multiple)
    shapes = sorted(
        ((len(b), int(num_frames(torch.tensor(int(max(durations[i] for i in b) * SAMPLE_RATE))))) for b in batches),
        key=lambda shape: shape[0] * shape[1],
    )
    n = min(n, len(shapes))
    return [shapes[round(k * (len(shapes) - 1) / max(n - 1, 1))] for k in range(n)]
