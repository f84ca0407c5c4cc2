"""Training throughput of a config: the product's path against a plain PyTorch baseline, same run.

    python scripts/bench_train.py --config configs/librispeech-960.yaml [--seconds 60] [--device cuda]

Data: synthetic utterances with LibriSpeech-like durations (train-960 spans ~1-35 s, mean 12.3 s;
drawn from a gamma fit) and random character labels at 15 characters per second; the audio is noise.
Speed does not depend on what is said, only on shapes, so this measures exactly the training step.

- optimized: what `asr train` runs: duration-bucketed batches (`DurationBatchSampler`, the config's
  max_batch_seconds), raw waveforms to the device, log-mel + CMVN + SpecAugment on the device, the
  padding-exact BiLSTM, CTC in fp32, AdamW (fused unless 16-mixed), gradient clipping; precision as
  the config resolves it (16-mixed on GPU, fp32 on CPU).
- baseline: as simple PyTorch recipes do: batches of a fixed count in random order padded to the
  longest, fp32, log-mel computed on the CPU per utterance, nn.LSTM(bidirectional) on packed
  sequences, same sizes, same loss and optimizer; batch count chosen for the same mean audio per step.

Reported per path: audio seconds trained per wall second (x real time), utterances/s, share of padded
frames, peak GPU memory, and achieved TFLOP/s with FLOPs counted as:
LSTM, per output frame, layer and direction: 2 * 4 * H * (D_in + H) for the forward pass; the
projection 2 * 2H * V; training = 3x forward (backward ~ 2x forward). Padded frames are NOT counted:
this is useful work only.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from asr.config import load_config  # noqa: E402
from asr.data.loader import DurationBatchSampler  # noqa: E402
from asr.features import LogMel, normalize_features, num_frames  # noqa: E402
from asr.lightning import CTCModule  # noqa: E402
from asr.text import BLANK, CharTokenizer  # noqa: E402

SAMPLE_RATE = 16000
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense fp16/bf16 tensor-core peaks (NVIDIA specs)


def fake_corpus(n: int, seed: int = 0, max_duration: float = 35.0):
    rng = np.random.default_rng(seed)
    durations = np.clip(rng.gamma(4.0, 12.3 / 4.0, n), 1.0, max_duration)
    labels = [rng.integers(1, 29, max(1, int(d * 15))).tolist() for d in durations]
    return durations.tolist(), labels


def useful_flops(model_cfg: dict, n_mels: int, vocab: int, out_frames: int) -> float:
    h, layers = model_cfg["hidden"], model_cfg["layers"]
    d_in = n_mels * model_cfg["subsample_factor"] if model_cfg["subsample"] == "stack" else 32 * ((n_mels + 3) // 4)
    per_frame = sum(2 * 2 * 4 * h * ((d_in if i == 0 else 2 * h) + h) for i in range(layers)) + 2 * 2 * h * vocab
    return 3.0 * per_frame * out_frames


class PackedBiLSTM(nn.Module):
    """The baseline model: the same subsampling and sizes, nn.LSTM(bidirectional) on packed input."""

    def __init__(self, module: CTCModule, cfg: dict):
        super().__init__()
        self.subsample = module.model.subsample
        self.lstm = nn.LSTM(self.subsample.out_dim, cfg["hidden"], num_layers=cfg["layers"], bidirectional=True,
                            batch_first=True, dropout=cfg["dropout"])
        self.proj = nn.Linear(2 * cfg["hidden"], module.model.proj.out_features)

    def forward(self, feats, lengths):
        x, lengths = self.subsample(feats, lengths)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.proj(out), lengths


NOISE = torch.from_numpy(np.random.default_rng(0).standard_normal(40 * SAMPLE_RATE, dtype=np.float32) * 0.1)


def batch_items(idx, durations, labels):
    """-> waveforms (list of 1-D tensors; slices of one noise buffer, as a loader would hand them over),
    their lengths, padded targets and target lengths."""
    lens = torch.tensor([int(durations[i] * SAMPLE_RATE) for i in idx])
    waves = [NOISE[:n] for n in lens.tolist()]
    targets = nn.utils.rnn.pad_sequence([torch.tensor(labels[i]) for i in idx], batch_first=True)
    return waves, lens, targets, torch.tensor([len(labels[i]) for i in idx])


class Vocabulary:
    """Stands in for the config's tokenizer: only its size shapes the model."""

    def __init__(self, config):
        tok = config["tokenizer"]
        self.vocab_size = CharTokenizer().vocab_size if tok.get("kind", "char") == "char" else int(tok["vocab_size"]) + 1


def run_optimized(config, durations, labels, device, seconds, precision):
    module = CTCModule(config, Vocabulary(config)).to(device).train()
    # As CTCModule.configure_optimizers: fused, except beside a loss scaler (16-mixed).
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=precision != "16-mixed")
    sampler = DurationBatchSampler(durations, config["data"]["max_batch_seconds"], seed=0)
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=precision == "16-mixed")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")

    def step(idx):
        waves, lens, targets, target_lens = batch_items(idx, durations, labels)
        audio = nn.utils.rnn.pad_sequence(waves, batch_first=True)  # what collate() does
        if device.type == "cuda":
            audio = audio.pin_memory().to(device, non_blocking=True)
        lens = lens.to(device)
        with autocast:
            logits, out_lens = module(audio, lens)
        loss = module.ctc_loss(logits, out_lens, targets.to(device), target_lens.to(device))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
        scaler.step(opt)
        scaler.update()
        return lens, out_lens

    return measure(step, sampler, durations, device, seconds, module.model.subsample.factor)


def run_baseline(config, durations, labels, device, seconds, per_batch):
    module = CTCModule(config, Vocabulary(config))
    model = PackedBiLSTM(module, config["model"]).to(device).train()
    logmel = LogMel(config["features"]["n_mels"])  # on the CPU, one utterance at a time
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    order = np.random.default_rng(0).permutation(len(durations)).tolist()
    batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]

    def step(idx):
        waves, lens, targets, target_lens = batch_items(idx, durations, labels)
        feats = [logmel(w[None])[0] for w in waves]  # (T, n_mels) each
        frames = torch.tensor([len(f) for f in feats])
        feats = nn.utils.rnn.pad_sequence(feats, batch_first=True)
        feats = normalize_features(feats, frames).to(device)
        logits, out_lens = model(feats, frames.to(device))
        log_probs = F.log_softmax(logits.float(), -1).transpose(0, 1)
        loss = F.ctc_loss(log_probs, targets.to(device), out_lens, target_lens.to(device), blank=BLANK, zero_infinity=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return lens, out_lens

    return measure(step, batches, durations, device, seconds, module.model.subsample.factor)


def measure(step, batches, durations, device, seconds, factor):
    """Run steps for `seconds` of wall time after 3 warm-up steps -> throughput figures."""
    batches = list(batches)
    for idx in batches[:3]:
        step(idx)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    audio_s = padded_s = utts = out_frames = 0
    start, k = time.perf_counter(), 3
    while time.perf_counter() - start < seconds:
        idx = batches[k % len(batches)]
        k += 1
        lens, out_lens = step(idx)
        audio_s += sum(durations[i] for i in idx)
        padded_s += len(idx) * max(durations[i] for i in idx)
        utts += len(idx)
        out_frames += int(out_lens.sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return {"x_real_time": audio_s / wall, "utts_per_s": utts / wall, "padding": 1 - audio_s / padded_s,
            "steps": k - 3, "out_frames_per_s": out_frames / wall,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else math.nan}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "librispeech-960.yaml"))
    p.add_argument("--seconds", type=float, default=60.0, help="measured wall time per path")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--utterances", type=int, default=4000)
    p.add_argument("--override", nargs="*", default=[], help="config overrides, e.g. data.max_batch_seconds=60")
    args = p.parse_args()
    config = load_config(args.config, [f"data.train={args.config}", f"data.val={args.config}", *args.override])
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    precision = "16-mixed" if device.type == "cuda" else "32-true"
    durations, labels = fake_corpus(args.utterances, max_duration=config["data"]["max_duration"])
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{Path(args.config).name} on {name}; {args.seconds:.0f} s per path; mean utterance {np.mean(durations):.1f} s")
    sampler = DurationBatchSampler(durations, config["data"]["max_batch_seconds"])
    per_batch = max(1, round(len(durations) / len(sampler.batches)))  # baseline: same utterances per step
    results = {"optimized": run_optimized(config, durations, labels, device, args.seconds, precision),
               "baseline": run_baseline(config, durations, labels, device, args.seconds, per_batch)}
    vocab = Vocabulary(config).vocab_size
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    for path, r in results.items():
        tflops = useful_flops(config["model"], config["features"]["n_mels"], vocab, r["out_frames_per_s"]) / 1e12
        share = f" = {100 * tflops / peak:.1f}% of {peak:.0f} peak" if peak else ""
        print(f"{path:10s} {r['x_real_time']:9.1f}x real time  {r['utts_per_s']:8.1f} utt/s  padding "
              f"{100 * r['padding']:4.1f}%  {r['steps']:5d} steps  {tflops:7.2f} TFLOP/s{share}  "
              f"peak mem {r['peak_gib']:.1f} GiB")
    print(f"speed-up: {results['optimized']['x_real_time'] / results['baseline']['x_real_time']:.2f}x")


if __name__ == "__main__":
    main()
