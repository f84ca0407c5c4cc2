"""One training step without a Trainer, for benchmarks and profiling (scripts/bench_train.py,
scripts/gpu_check.py): what Lightning's automatic optimisation runs for CTCModule, in the same order.
tests/test_optimizer.py checks that it leaves the weights where Trainer.fit leaves them."""

import torch

from asr.training.module import CTCModule

AUTOCAST = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


def manual_step(module: CTCModule, precision: str = "32-true", optimizer=None):
    """-> step(batch): one optimisation step of `module` (on its device) on a host batch from `collate`:
    the batch to the device (non-blocking), `training_step` under autocast in `precision`, backward (loss-scaled
    under 16-mixed), `on_before_optimizer_step` (clipping and the NaN guard) and the module's fused AdamW
    (`optimizer`: another, e.g. with other settings). The LR schedule is left out: it costs nothing per step."""
    device = module.device
    optimizer = optimizer or module.make_optimizer()
    dtype = AUTOCAST.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    module.log = lambda *args, **kwargs: None  # no Trainer to log to

    def step(batch: dict) -> torch.Tensor:
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = module.training_step(batch, 0)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # what the module's hook does under Lightning's 16-mixed (a no-op otherwise)
        module.on_before_optimizer_step(optimizer)
        scaler.step(optimizer)
        scaler.update()
        return loss

    return step
