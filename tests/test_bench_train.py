"""scripts/bench_train.py compares like with like: its baseline is the same network, its FLOP count
follows the stated formula, and both paths run."""

import importlib.util
from pathlib import Path

import pytest
import torch

from asr.config import Config

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_train.py"
spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def tiny_config(model_merge, **model):
    return Config.from_dict(
        {
            "model": {"hidden": 16, "layers": 2, "dropout": 0.0, "merge": model_merge, **model},
            "data": {"max_batch_seconds": 8, "num_workers": 0},
        }
    )


@pytest.mark.parametrize("model_merge", ["concat", "sum"])
def test_the_baseline_is_the_same_network_as_the_product(model_merge):
    """Given the product's weights, the packed nn.LSTM(bidirectional) stack computes the same outputs, so
    the speed-up compares two ways of running one model."""
    torch.manual_seed(0)
    config = tiny_config(model_merge)
    module = bench.CTCModule(config, bench.Vocabulary(config)).eval()
    network = module.model.network  # the product's network, after the frontend: features in
    baseline = bench.PackedBiLSTM(module, config.model).eval()
    for ours, theirs in zip(network.lstm, baseline.lstm):
        for suffix, one_way in (("", ours.fwd), ("_reverse", ours.bwd)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(theirs, f"{name}_l0{suffix}").data.copy_(getattr(one_way, f"{name}_l0"))
    baseline.proj.load_state_dict(network.proj.state_dict())
    lengths = torch.tensor([61, 40, 23])
    feats = torch.randn(3, 61, 80) * (torch.arange(61)[None, :, None] < lengths[:, None, None])
    with torch.no_grad():
        ours, our_lens = network(feats, lengths)
        theirs, their_lens = baseline(feats, lengths)
    assert torch.equal(our_lens, their_lens)
    for i, n in enumerate(our_lens.tolist()):
        assert torch.allclose(ours[i, :n], theirs[i, :n], atol=1e-5)


def test_flop_count_follows_the_stated_formula():
    config = tiny_config("sum", char_ctc_layer=1)
    module = bench.CTCModule(config, bench.Vocabulary(config))
    network = module.model.network
    h, vocab, chars, d_in = 16, network.proj.out_features, network.char_proj.out_features, 80 * 4
    lstm = 2 * (2 * 4 * h * (d_in + h)) + 2 * (2 * 4 * h * (h + h))  # two layers, two directions; summed: input H
    assert module.model.training_flops(10) == 3 * 10 * (lstm + 2 * h * vocab)
    assert module.model.training_flops(10, with_char_head=True) == 3 * 10 * (lstm + 2 * h * vocab + 2 * h * chars)


def test_both_paths_train_and_report_throughput():
    config = tiny_config("sum", char_ctc_layer=1, char_ctc_weight=0.5)
    durations, texts = bench.fake_corpus(40)
    durations = [d / 6 for d in durations]  # LibriSpeech's spread of lengths, but short: ~2 s on average
    texts = [t[: int(d * 15)].strip() or "A" for t, d in zip(texts, durations)]  # 15 characters a second again
    cpu = torch.device("cpu")
    optimized = bench.run_optimized(config, durations, texts, cpu, seconds=0.3, precision="32-true")
    baseline = bench.run_baseline(config, durations, texts, cpu, seconds=0.3, per_batch=3)
    for result in (optimized, baseline):
        assert result["steps"] >= 1 and result["x_real_time"] > 0 and 0 <= result["padding"] < 1
    assert optimized["padding"] < baseline["padding"]  # duration buckets vs random batches
