"""Run configs: YAML files plus key.sub=value overrides, numbers read as numbers."""
import pytest

from asr.config import DEFAULTS, apply_override, load_config
from asr.errors import ASRError


def test_overrides_and_exponent_floats_without_a_dot(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: {train: a.jsonl, val: b.jsonl}\noptim: {lr: 3e-4}\n")
    config = load_config(path, ["optim.warmup_steps=600", "optim.weight_decay=1e-2", "data.speed_perturb=[0.9, 1.1]",
                                "trainer.max_time=00:00:14:30", "model.subsample=conv"])
    assert config["optim"]["lr"] == pytest.approx(3e-4)  # plain PyYAML would give the string "3e-4"
    assert config["optim"]["weight_decay"] == pytest.approx(0.01)
    assert config["optim"]["warmup_steps"] == 600
    assert config["data"]["speed_perturb"] == [0.9, 1.1]
    assert config["trainer"]["max_time"] == "00:00:14:30"
    assert config["model"]["subsample"] == "conv" and config["model"]["hidden"] == DEFAULTS["model"]["hidden"]


def test_bad_override_names_the_problem():
    with pytest.raises(ASRError, match="expected key.sub=value"):
        apply_override({}, "optim.lr")
    with pytest.raises(ASRError, match="not a section"):
        apply_override({"seed": 0}, "seed.x=1")


def test_auto_precision_never_picks_bf16_for_a_cuda_lstm_and_measures_on_a_bf16_cpu(monkeypatch):
    import torch

    import asr.train
    from asr.train import auto_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_precision("auto") == "16-mixed"  # cuDNN's LSTM under bf16 autocast runs fp16 unscaled
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert auto_precision("auto") == "32-true"  # emulated bf16 would be slower than fp32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    # Native bf16: a measurement decides, since oneDNN's bf16 LSTM is faster on some such CPUs, slower on others.
    step_ms = {False: 10.0, True: 8.0}
    monkeypatch.setattr(asr.train, "lstm_step_seconds", lambda hidden, bf16: step_ms[bf16] / 1000)
    assert auto_precision("cpu") == "bf16-mixed"
    step_ms[True] = 13.0
    assert auto_precision("cpu") == "32-true"
    step_ms[True] = 8.0
    assert auto_precision("cpu", measure=False) == "32-true"  # distributed ranks must not decide apart


def test_precision_probe_times_an_lstm_step_and_leaves_the_random_stream_alone():
    import torch

    from asr.train import is_distributed, lstm_step_seconds

    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    seconds = lstm_step_seconds(hidden=32, bf16=False, batch=2, frames=10)
    assert 0 < seconds < 5
    assert torch.equal(torch.rand(3), expected)
    assert not is_distributed({"devices": 1}) and not is_distributed({"devices": "auto"})
    assert is_distributed({"devices": 2}) and is_distributed({"num_nodes": 2})


def test_resolve_precision_measures_once_for_one_process_and_never_for_several(monkeypatch):
    import asr.train
    from asr.train import resolve_precision

    calls = []
    monkeypatch.setattr(asr.train, "auto_precision",
                        lambda accelerator, hidden, measure: calls.append((hidden, measure)) or "bf16-mixed")
    config = {"model": {"hidden": 48}, "trainer": {"precision": "auto", "devices": 1}}
    resolve_precision(config)
    resolve_precision(config)  # already decided: no second measurement
    assert config["trainer"]["precision"] == "bf16-mixed" and calls == [(48, True)]
    config = {"model": {"hidden": 48}, "trainer": {"precision": "auto", "devices": 2}}
    resolve_precision(config)
    assert calls[-1] == (48, False)
    config = {"model": {"hidden": 48}, "trainer": {"precision": "16-mixed"}}
    resolve_precision(config)
    assert config["trainer"]["precision"] == "16-mixed" and len(calls) == 2
