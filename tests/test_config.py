"""Run configs: YAML files plus key.sub=value overrides, numbers read as numbers."""

from pathlib import Path

import pytest

from asr.config import Config, apply_override, load_config
from asr.errors import ASRError


def test_overrides_and_exponent_floats_without_a_dot(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: {train: a.jsonl, val: b.jsonl}\noptim: {lr: 3e-4}\n")
    config = load_config(
        path,
        [
            "optim.warmup_steps=600",
            "optim.weight_decay=1e-2",
            "data.speed_perturb=[0.9, 1.1]",
            "trainer.max_time=00:00:14:30",
            "model.subsample=conv",
        ],
    )
    assert isinstance(config, Config)
    assert config.optim.lr == pytest.approx(3e-4)  # plain PyYAML would give the string "3e-4"
    assert config.optim.weight_decay == pytest.approx(0.01)
    assert config.optim.warmup_steps == 600
    assert config.data.speed_perturb == [0.9, 1.1]
    assert config.trainer["max_time"] == "00:00:14:30"
    assert config.model.subsample == "conv" and config.model.hidden == Config().model.hidden


def test_bad_override_names_the_problem():
    with pytest.raises(ASRError, match="expected key.sub=value"):
        apply_override({}, "optim.lr")
    with pytest.raises(ASRError, match="not a section"):
        apply_override({"seed": 0}, "seed.x=1")


def test_auto_precision_never_picks_bf16_for_a_cuda_lstm_and_measures_on_a_bf16_cpu(monkeypatch):
    import torch

    import asr.training.precision
    from asr.training.precision import auto_precision

    monkeypatch.setattr(asr.training.precision, "cpu_runs_bf16", lambda: True)

    step_ms = {False: 10.0, True: 8.0}

    def probe(bf16):
        return step_ms[bf16] / 1000

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_precision("auto", probe) == "16-mixed"  # cuDNN's LSTM under bf16 autocast runs fp16 unscaled
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert auto_precision("auto", probe) == "32-true"  # emulated bf16 would be slower than fp32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    # Native bf16: a measurement decides, since oneDNN's bf16 LSTM is faster on some such CPUs, slower on others.
    assert auto_precision("cpu", probe) == "bf16-mixed"
    step_ms[True] = 13.0
    assert auto_precision("cpu", probe) == "32-true"
    step_ms[True] = 8.0
    assert auto_precision("cpu", None) == "32-true"  # no measurement (distributed ranks must not decide apart)
    monkeypatch.setattr(asr.training.precision, "cpu_runs_bf16", lambda: False)
    assert auto_precision("cpu", probe) == "32-true"  # the flags say bf16 but oneDNN cannot (a capped ISA)


def test_auto_precision_interleaves_passes_and_ignores_each_precisions_first(monkeypatch):
    import torch

    import asr.training.precision
    from asr.training.precision import auto_precision, probe_batches

    monkeypatch.setattr(asr.training.precision, "cpu_runs_bf16", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    passes = []
    ms = {False: [10.0, 10.0, 10.0], True: [5.0, 11.0, 11.0]}  # bf16's first pass: not what training sees

    def probe(bf16):
        passes.append(bf16)
        return ms[bf16][passes.count(bf16) - 1] / 1000

    assert auto_precision("cpu", probe) == "32-true"
    assert passes == [False, True] * 3
    durations = [1.0 + (i % 17) for i in range(200)]
    shapes = probe_batches(durations, max_batch_seconds=30, n=8)
    assert len(shapes) == 8 and all(batch >= 1 and frames > 0 for batch, frames in shapes)
    sizes = [batch * frames for batch, frames in shapes]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # spread from the smallest batch to the largest
    shapes = probe_batches([1.0, 2.0, 3.0], max_batch_seconds=1.5, n=8)  # fewer batches than n: each once
    assert sorted(frames for _, frames in shapes) == [101, 201, 301]


def test_bf16_on_a_cpu_that_cannot_run_it_trains_in_fp32_with_a_warning(monkeypatch, caplog):
    import torch

    import asr.training.precision
    from asr.training.precision import resolve_precision

    monkeypatch.setattr(asr.training.precision, "cpu_runs_bf16", lambda: False)
    config = Config.from_dict({"trainer": {"precision": "bf16-mixed", "accelerator": "cpu"}})
    with caplog.at_level("WARNING", logger="asr"):
        resolve_precision(config)
    assert config.trainer["precision"] == "32-true"
    assert "cannot run the LSTM in bf16" in caplog.text and "32-true" in caplog.text
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)  # a Mac GPU: not the CPU's business
    config = Config.from_dict({"trainer": {"precision": "bf16-mixed", "accelerator": "auto"}})
    resolve_precision(config)
    assert config.trainer["precision"] == "bf16-mixed"
    monkeypatch.setattr(asr.training.precision, "cpu_runs_bf16", lambda: True)
    config = Config.from_dict({"trainer": {"precision": "bf16-mixed", "accelerator": "cpu"}})
    resolve_precision(config)
    assert config.trainer["precision"] == "bf16-mixed"


@pytest.mark.skipif(
    __import__("platform").machine() not in ("x86_64", "AMD64"), reason="ONEDNN_MAX_CPU_ISA=AVX2 caps only x86 CPUs"
)
def test_oneDNN_on_an_avx2_only_cpu_has_no_bf16_lstm_and_asr_says_so():
    """Run where oneDNN is capped at AVX2 (as on an AVX2-only CPU): bf16 is reported missing, so asr trains
    in fp32 rather than crash inside oneDNN. On an AVX2 machine the cap changes nothing."""
    import subprocess
    import sys

    code = (
        "import torch, asr.training.precision as precision\n"
        "from asr.config import Config\n"
        "print(precision.cpu_runs_bf16())\n"
        "c = Config.from_dict({'trainer': {'precision': 'bf16-mixed', 'accelerator': 'cpu'}})\n"
        "precision.resolve_precision(c)\n"
        "lstm = torch.nn.LSTM(8, 16, bidirectional=True)\n"
        "with torch.autocast('cpu', dtype=torch.bfloat16, enabled=c.trainer['precision'] != '32-true'):\n"
        "    lstm(torch.randn(5, 2, 8))\n"
        "print(c.trainer['precision'])\n"
    )
    env = {**__import__("os").environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "32-true"]


def test_precision_probe_times_the_models_step_and_leaves_no_trace():
    import torch

    from asr.model import BiLSTMCTC, ModelDims
    from asr.training.precision import is_distributed, model_step_seconds

    model = BiLSTMCTC(ModelDims(vocab_size=29, hidden=16, layers=2, dropout=0.1))
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    seconds = model_step_seconds(model, 80, [(2, 40), (3, 30)], bf16=False)
    assert 0 < seconds < 5
    assert torch.equal(torch.rand(3), expected)  # dropout's draws came from a forked stream
    assert all(p.grad is None for p in model.parameters())
    assert not is_distributed({"devices": 1}) and not is_distributed({"devices": "auto"})
    assert is_distributed({"devices": 2}) and is_distributed({"num_nodes": 2})


def test_resolve_precision_measures_once_for_one_process_and_never_for_several(monkeypatch):
    import asr.training.precision
    from asr.training.precision import resolve_precision

    calls = []
    monkeypatch.setattr(asr.training.precision, "cpu_runs_bf16", lambda: True)  # as on an AVX-512 CPU
    monkeypatch.setattr(
        asr.training.precision,
        "auto_precision",
        lambda accelerator, step_seconds: calls.append(step_seconds) or "bf16-mixed",
    )

    def probe(bf16):
        return 0.01

    config = Config.from_dict({"model": {"hidden": 48}, "trainer": {"precision": "auto", "devices": 1}})
    resolve_precision(config, probe)
    resolve_precision(config, probe)  # already decided: no second measurement
    assert config.trainer["precision"] == "bf16-mixed" and calls == [probe]
    config = Config.from_dict({"model": {"hidden": 48}, "trainer": {"precision": "auto", "devices": 2}})
    resolve_precision(config, probe)
    assert calls[-1] is None  # distributed: no measurement
    config = Config.from_dict({"model": {"hidden": 48}, "trainer": {"precision": "16-mixed"}})
    resolve_precision(config, probe)
    assert config.trainer["precision"] == "16-mixed" and len(calls) == 2


def _yaml_for(key: str, value) -> str:
    """'features.specaugment.freq_wdth', 3 -> the same key as nested YAML sections."""
    *parents, leaf = key.split(".")
    text = f"{leaf}: {value}"
    for parent in reversed(parents):
        text = f"{parent}: {{{text}}}"
    return text


# (the mistyped key, a value for it, the message it must raise): at every depth of the config.
TYPOS = [
    ("optm.lr", "1e-3", "unknown key 'optm' (did you mean 'optim'?)"),
    ("features.taper", "5", "unknown key 'features.taper' (did you mean 'features.taper_ms'?)"),
    ("data.speed_pertub", "[0.9, 1.1]", "unknown key 'data.speed_pertub' (did you mean 'data.speed_perturb'?)"),
    (
        "features.specaugment.freq_wdth",
        "10",
        "unknown key 'features.specaugment.freq_wdth' (did you mean 'features.specaugment.freq_width'?)",
    ),
    ("trainer.max_epoch", "3", "unknown key 'trainer.max_epoch' (did you mean 'trainer.max_epochs'?)"),
    ("model.hidden", "abc", "key 'model.hidden': expected int, got 'abc'"),
]


@pytest.mark.parametrize("key, value, message", TYPOS, ids=[t[0] for t in TYPOS])
def test_a_mistyped_key_or_a_wrong_type_is_rejected_with_the_closest_valid_key(tmp_path, key, value, message):
    base = "data: {train: a.jsonl, val: b.jsonl}\n"
    path = tmp_path / "run.yaml"
    path.write_text(base + _yaml_for(key, value) + "\n")  # in the YAML file
    with pytest.raises(ASRError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: {message}"
    path.write_text(base)  # the same key as a command-line override
    with pytest.raises(ASRError) as e:
        load_config(path, [f"{key}={value}"])
    assert str(e.value) == f"{path}: {message}"
    values = {}  # and from plain data (a checkpoint's config), without the file's name
    apply_override(values, f"{key}={value}")
    with pytest.raises(ASRError) as e:
        Config.from_dict(values)
    assert str(e.value) == message


def test_a_key_set_by_asr_or_a_wrong_section_type_is_rejected():
    with pytest.raises(ASRError, match=r"key 'trainer.callbacks': set by asr itself"):
        Config.from_dict({"trainer": {"callbacks": []}})
    with pytest.raises(ASRError, match=r"key 'data.speed_perturb\[1\]': expected float, got 'fast'"):
        Config.from_dict({"data": {"speed_perturb": [0.9, "fast"]}})


def test_missing_keys_take_the_defaults_and_plain_data_round_trips():
    config = Config.from_dict(
        {"model": {"hidden": 48}, "features": {"specaugment": {"freq_masks": 0}}, "trainer": {"max_epochs": 2}}
    )
    default = Config()
    assert config.model.hidden == 48 and config.model.layers == default.model.layers
    assert config.features.specaugment.freq_masks == 0
    assert config.features.specaugment.freq_width == default.features.specaugment.freq_width
    assert config.trainer["max_epochs"] == 2 and config.trainer["precision"] == default.trainer["precision"]
    assert Config.from_dict({"optim": {"lr": 1}}).optim.lr == 1.0 and isinstance(
        Config.from_dict({"optim": {"lr": 1}}).optim.lr, float
    )
    plain = config.to_dict()
    assert isinstance(plain["features"]["specaugment"], dict)
    assert Config.from_dict(plain) == config


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert isinstance(config, Config) and config.data.train and config.data.val
    assert Config.from_dict(config.to_dict()) == config


def test_a_plain_value_where_a_section_belongs_names_the_section():
    # asr/config.py from_plain() puts its `where` prefix, which ends in a dot, into this message:
    # it reads "features.specaugment.: expected a section ..." (a stray dot after the key's name).
    with pytest.raises(ASRError) as e:
        Config.from_dict({"features": {"specaugment": 3}})
    assert str(e.value).startswith("features.specaugment: expected a section"), str(e.value)
    with pytest.raises(ASRError) as e:
        Config.from_dict({"model": 3})
    assert str(e.value).startswith("model: expected a section"), str(e.value)


def test_the_shipped_configs_are_there():
    names = {p.name for p in Path(__file__).resolve().parents[1].glob("configs/*.yaml")}
    assert {"demo.yaml", "fsdd.yaml"} <= names


def test_every_model_field_is_one_config_key_with_the_models_default():
    """ModelDims is the one home of the model's defaults: each of its fields (but the vocabulary sizes, which the
    tokenizer sets) is a key of the features or model section, defaulting to ModelDims' value; model_dims
    carries a YAML value to the model."""
    import dataclasses

    from asr.config import NOT_CONFIG_KEYS, dims_section
    from asr.dims import ModelDims
    from asr.training.module import model_dims

    config = Config()
    for field in dataclasses.fields(ModelDims):
        if field.name in NOT_CONFIG_KEYS:
            continue
        assert getattr(getattr(config, dims_section(field.name)), field.name) == field.default, field.name
    changed = Config.from_dict({"model": {"hidden": 48, "merge": "sum"}, "features": {"n_mels": 64}})
    dims = model_dims(changed, vocab_size=29)
    assert (dims.hidden, dims.merge, dims.n_mels, dims.vocab_size) == (48, "sum", 64, 29)
    with pytest.raises(KeyError):
        dims_section("no_such_field")
