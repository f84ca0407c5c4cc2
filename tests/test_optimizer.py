"""Gradient clipping (done by CTCModule, in the pass that checks for NaN) and the fused AdamW it allows."""
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision

from asr.config import Config
from asr.data.batching import collate
from asr.text import CharTokenizer
from asr.training.module import CTCModule
from asr.training.precision import cpu_runs_bf16

CLIP = 0.5


def tiny_module():
    config = Config.from_dict({"model": {"hidden": 16, "layers": 2, "dropout": 0.0},
                               "trainer": {"gradient_clip_val": CLIP}})
    return CTCModule(config, CharTokenizer())


def grad_norm(module):
    return float(torch.nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None]))


def test_gradients_above_the_limit_are_scaled_down_to_it_and_others_left_alone():
    module = tiny_module()
    module.log = lambda *a, **k: None  # outside a Trainer
    for scale, expected in ((100.0, CLIP), (1e-3, None)):
        torch.manual_seed(0)
        for p in module.parameters():
            p.grad = torch.randn_like(p) * scale
        before = [p.grad.clone() for p in module.parameters()]
        module.on_before_optimizer_step(None)
        after = [p.grad for p in module.parameters()]
        if expected is None:
            assert all(torch.equal(a, b) for a, b in zip(after, before))
        else:
            assert grad_norm(module) == pytest.approx(expected, rel=1e-4)
            ratio = after[0].flatten()[0] / before[0].flatten()[0]
            assert all(torch.allclose(a, b * ratio) for a, b in zip(after, before))  # direction kept


def batches(tokenizer, n=3):
    torch.manual_seed(0)
    items = [{"id": f"u{i}", "audio": torch.randn(16000 + 800 * i) * 0.1, "ids": tokenizer.encode("HELLO WORLD"),
              "text": "HELLO WORLD"} for i in range(2)]
    return torch.utils.data.DataLoader([collate(items)] * n, batch_size=None)


@pytest.mark.parametrize("precision", ["32-true", pytest.param("bf16-mixed", marks=pytest.mark.skipif(
    not cpu_runs_bf16(), reason="oneDNN has no bf16 LSTM on this CPU (AVX2 only): asr trains it in fp32")), "16-mixed"])
def test_fused_adamw_unless_a_loss_scaler_and_clipping_sees_true_gradients(precision, tmp_path):
    """16-mixed: Lightning unscales the fp16 gradients before on_before_optimizer_step, but a fused
    optimizer would unscale them only inside its step, so clipping would read them 65,536x too big."""
    module = tiny_module()
    seen = []  # (norm as the hook receives the gradients, norm after it)
    hook = module.on_before_optimizer_step

    def record(optimizer):
        before = grad_norm(module)
        hook(optimizer)
        seen.append((before, grad_norm(module)))

    module.on_before_optimizer_step = record
    module.train_dataloader = lambda: batches(module.tokenizer)
    kwargs = ({"plugins": [MixedPrecision("16-mixed", "cpu")]} if precision == "16-mixed"
              else {"precision": precision})
    trainer = pl.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kwargs)
    with torch.backends.mkldnn.flags(enabled=precision != "16-mixed"):  # oneDNN has no fp16 LSTM on CPUs
        trainer.fit(module)
    assert trainer.optimizers[0].param_groups[0]["fused"] == (precision != "16-mixed")
    finite = [(b, a) for b, a in seen if b == b and b != float("inf")]  # fp16 overflow steps are skipped
    assert finite, "no step had finite gradients"
    assert all(b < 1e4 for b, _ in finite), f"clipping saw scaled gradients: {finite}"
    assert all(a <= CLIP * 1.001 for _, a in finite) and any(b > CLIP for b, _ in finite)
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_resuming_a_checkpoint_saved_unfused_keeps_this_runs_fused_optimizer():
    from types import SimpleNamespace

    module = tiny_module()
    module._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(), estimated_stepping_batches=10)  # no scaler
    optimizer = module.configure_optimizers()["optimizer"]
    saved = torch.optim.AdamW(module.parameters(), fused=False)  # e.g. a checkpoint from before fused AdamW
    optimizer.load_state_dict(saved.state_dict())
    assert optimizer.param_groups[0]["fused"] is True
