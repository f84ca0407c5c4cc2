"""Gradient clipping (done by CTCModule, in the pass that checks for NaN) and the fused AdamW it allows."""

import pytest
import pytorch_lightning as pl
import torch
from conftest import bare_trainer
from pytorch_lightning.plugins.precision import MixedPrecision

from asr.config import Config
from asr.data.batching import collate
from asr.text import CharTokenizer
from asr.training.module import CTCModule
from asr.training.precision import cpu_runs_bf16

CLIP = 0.5


def tiny_module():
    config = Config.from_dict(
        {"model": {"hidden": 16, "layers": 2, "dropout": 0.0}, "trainer": {"gradient_clip_val": CLIP}}
    )
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
        module.on_before_optimizer_step(torch.optim.SGD(module.parameters(), lr=0.1))  # unfused
        after = [p.grad for p in module.parameters()]
        if expected is None:
            assert all(torch.equal(a, b) for a, b in zip(after, before))
        else:
            assert grad_norm(module) == pytest.approx(expected, rel=1e-4)
            ratio = after[0].flatten()[0] / before[0].flatten()[0]
            assert all(torch.allclose(a, b * ratio) for a, b in zip(after, before))  # direction kept


def batches(tokenizer, n=3):
    torch.manual_seed(0)
    items = [
        {
            "id": f"u{i}",
            "audio": torch.randn(16000 + 800 * i) * 0.1,
            "ids": tokenizer.encode("HELLO WORLD"),
            "text": "HELLO WORLD",
        }
        for i in range(2)
    ]
    return torch.utils.data.DataLoader([collate(items)] * n, batch_size=None)


@pytest.mark.parametrize(
    "precision",
    [
        "32-true",
        pytest.param(
            "bf16-mixed",
            marks=pytest.mark.skipif(
                not cpu_runs_bf16(), reason="oneDNN has no bf16 LSTM on this CPU (AVX2 only): asr trains it in fp32"
            ),
        ),
        "16-mixed",
    ],
)
def test_fused_adamw_in_every_precision_steps_on_true_clipped_gradients(precision, tmp_path):
    """16-mixed: Lightning leaves a fused optimizer's fp16 gradients scaled (x65,536) for its step to
    unscale. CTCModule unscales them before clipping, so the step must get them true, with no scale.
    This pins Lightning 2.6's MixedPrecision.optimizer_step (no unscaling for a fused optimizer, no clipping
    by Lightning), on which CTCModule.on_before_optimizer_step relies: it fails on a release that changes it."""
    module = tiny_module()
    seen = []  # (true gradient norm as the hook receives the gradients, norm after it)
    at_step = []  # (the loss scale GradScaler hands the fused step, the gradient norm it steps on)
    hook = module.on_before_optimizer_step

    def record(optimizer):
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        before = grad_norm(module) / (scaler.get_scale() if scaler is not None else 1.0)
        hook(optimizer)
        seen.append((before, grad_norm(module)))

    class StepSpy(pl.Callback):
        def on_train_start(self, trainer, module):
            trainer.optimizers[0].register_step_pre_hook(
                lambda opt, args, kwargs: at_step.append((getattr(opt, "grad_scale", None), grad_norm(module)))
            )

    module.on_before_optimizer_step = record
    module.train_dataloader = lambda: batches(module.tokenizer)
    kwargs = {"plugins": [MixedPrecision("16-mixed", "cpu")]} if precision == "16-mixed" else {"precision": precision}
    trainer = bare_trainer(tmp_path, max_steps=3, callbacks=[StepSpy()], **kwargs)
    with torch.backends.mkldnn.flags(enabled=precision != "16-mixed"):  # oneDNN has no fp16 LSTM on CPUs
        trainer.fit(module)
    assert trainer.optimizers[0].param_groups[0]["fused"] is True
    finite = [(b, a) for b, a in seen if b == b and b != float("inf")]  # fp16 overflow steps are skipped
    assert finite, "no step had finite gradients"
    assert all(a <= CLIP * 1.001 for _, a in finite) and any(b > CLIP for b, _ in finite)
    assert len(at_step) == len(seen) and all(scale is None for scale, _ in at_step), "the step got scaled gradients"
    assert all(n <= CLIP * 1.001 for _, n in at_step if n == n and n != float("inf"))
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_resuming_a_checkpoint_saved_unfused_keeps_this_runs_fused_optimizer():
    from types import SimpleNamespace

    module = tiny_module()
    module.trainer = SimpleNamespace(precision_plugin=SimpleNamespace(), estimated_stepping_batches=10)  # no scaler
    optimizer = module.configure_optimizers()["optimizer"]
    saved = torch.optim.AdamW(module.parameters(), fused=False)  # e.g. a checkpoint from before fused AdamW
    optimizer.load_state_dict(saved.state_dict())
    assert optimizer.param_groups[0]["fused"] is True


def test_a_non_finite_step_leaves_the_weights_and_adamw_state_as_they_were():
    """The fused AdamW skips the step itself (found_inf), without the host reading the gradients. This pins
    torch 2.14's fused optimizers reading `optimizer.found_inf` (GradScaler's protocol, which CTCModule also uses
    without a scaler): it fails on a release that stops."""
    module = tiny_module()
    module.log = lambda *a, **k: None  # outside a Trainer
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2, fused=True)

    def step(fill):
        for p in module.parameters():
            p.grad = torch.full_like(p, fill)
        module.on_before_optimizer_step(optimizer)
        optimizer.step()

    step(0.1)
    weights = [p.detach().clone() for p in module.parameters()]
    state = {k: v.clone() for k, v in optimizer.state[next(module.parameters())].items()}
    step(float("nan"))
    assert all(torch.equal(a, b) for a, b in zip(module.parameters(), weights))
    assert all(torch.equal(optimizer.state[next(module.parameters())][k], v) for k, v in state.items())
    assert module.skipped_steps == 1
    step(0.1)
    assert float(optimizer.state[next(module.parameters())]["step"]) == 2  # the skipped step was not counted
    assert not any(torch.equal(a, b) for a, b in zip(module.parameters(), weights))
    assert module.skipped_steps == 1


def test_the_nan_check_and_clipping_read_nothing_on_the_host_between_stop_checks(monkeypatch):
    """Any host read of a device tensor is a sync on a GPU; CPU tensors show where one would be. (The
    stop check reads the skip count on every STOP_CHECK_EVERY-th call; this is the first.)"""
    from types import SimpleNamespace

    module = tiny_module()
    module.log = lambda *a, **k: None
    module.trainer = SimpleNamespace(precision_plugin=SimpleNamespace(), world_size=1)  # no loss scaler
    optimizer = torch.optim.AdamW(module.parameters(), fused=True)
    for p in module.parameters():
        p.grad = torch.randn_like(p) * 100
    module.skipped_steps = 0

    def host_read(*args):
        raise AssertionError("a tensor was read on the host")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    module.on_before_optimizer_step(optimizer)
    monkeypatch.undo()
    assert grad_norm(module) == pytest.approx(CLIP, rel=1e-4)
    assert float(optimizer.found_inf) == 0.0


class NaNOnSecondStep(pl.Callback):
    """Puts an inf into the (still scaled) gradients of the second step; records the weights around it."""

    def on_before_optimizer_step(self, trainer, module, optimizer):
        if trainer.global_step == 1:
            next(module.parameters()).grad.view(-1)[0] = float("inf")
            self.before = [p.detach().clone() for p in module.parameters()]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx == 1:
            self.unchanged = all(torch.equal(a, b) for a, b in zip(module.parameters(), self.before))


def test_16_mixed_skips_a_non_finite_step_with_the_fused_optimizer(tmp_path):
    module = tiny_module()
    module.train_dataloader = lambda: batches(module.tokenizer, n=3)
    spy = NaNOnSecondStep()
    trainer = bare_trainer(tmp_path, max_steps=3, plugins=[MixedPrecision("16-mixed", "cpu")], callbacks=[spy])
    with torch.backends.mkldnn.flags(enabled=False):  # oneDNN has no fp16 LSTM on CPUs
        trainer.fit(module)
    assert spy.unchanged and module.skipped_steps >= 1
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_16_mixed_with_accumulation_survives_a_batch_whose_every_file_failed(tmp_path):
    """An empty batch returns no loss: Lightning then runs no step, so the hook must not unscale either
    (a second unscale before the next step would raise)."""
    module = tiny_module()
    good = next(iter(batches(module.tokenizer, n=1)))
    empty = collate([None])
    module.train_dataloader = lambda: torch.utils.data.DataLoader([good, empty, good, good], batch_size=None)
    trainer = bare_trainer(
        tmp_path, max_epochs=1, accumulate_grad_batches=2, plugins=[MixedPrecision("16-mixed", "cpu")]
    )
    with torch.backends.mkldnn.flags(enabled=False):  # oneDNN has no fp16 LSTM on CPUs
        trainer.fit(module)
    assert trainer.global_step == 2


def test_the_benchmarks_step_leaves_the_weights_where_lightning_does(tmp_path):
    """asr.training.step.manual_step (what the benchmarks time) against Trainer.fit: same module, same batches,
    same fused AdamW (no schedule), three steps in fp32 -> the same weights."""
    from asr.training.step import manual_step

    def fresh():
        torch.manual_seed(0)
        return tiny_module()

    by_hand, by_lightning = fresh(), fresh()
    step = manual_step(by_hand)
    for batch in batches(by_hand.tokenizer, n=3):
        step(batch)
    by_lightning.train_dataloader = lambda: batches(by_lightning.tokenizer, n=3)
    by_lightning.configure_optimizers = by_lightning.make_optimizer
    bare_trainer(tmp_path, max_steps=3).fit(by_lightning)
    moved, start = False, fresh().state_dict()
    for (name, ours), theirs in zip(by_hand.named_parameters(), by_lightning.parameters()):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5, msg=name)
        moved |= not torch.equal(ours, start[name])
    assert moved
