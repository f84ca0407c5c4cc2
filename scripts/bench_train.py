"""Training throughput of a config: the product's path against a plain PyTorch baseline, same run.

    python scripts/bench_train.py --config configs/librispeech-960.yaml [--seconds 60] [--device cuda]

Data: synthetic utterances with LibriSpeech-like durations (train-960 spans ~1-35 s, mean 12.3 s;
drawn from a gamma fit) and random transcripts of letters and spaces at 15 characters per second; the
audio is noise. Speed does not depend on what is said, only on shapes, so this measures exactly the
training step.

- optimized: what `asr train` runs (asr.training.step.manual_step, checked against Lightning's own loop by
  tests/test_optimizer.py): duration-bucketed batches (`DurationBatchSampler`,
  the config's max_batch_seconds) made by the loader's `collate`, raw waveforms to the device (pinned,
  non-blocking), `CTCModule.training_step` (log-mel + CMVN + SpecAugment on the device, the
  padding-exact BiLSTM, CTC in fp32, the character head's loss where the config has one) under the
  precision `asr train` would pick (`precision: auto`: 16-mixed on a GPU, measured on a CPU), then
  `CTCModule.on_before_optimizer_step` (its NaN check and clipping, on the device) and fused AdamW.
- baseline: as simple PyTorch recipes do: batches of a fixed count in random order padded to the
  longest, fp32 (TF32 allowed on a GPU, as for the optimized path), log-mel computed on the CPU per
  utterance in the dataset (so in the same loader workers), one nn.LSTM(bidirectional) per layer on
  packed sequences (directions summed between layers where the config says merge: sum, as
  deepspeech.pytorch does), same sizes, CTC loss (no character head: less work than the optimized
  path does where the config has one), AdamW, clipping; batch count chosen for the same mean audio
  per step.

Reported per path: audio seconds trained per wall second (x real time), utterances/s, share of padded
frames, utterances per batch and the share of batches whose size is a multiple of 8, peak GPU memory,
and achieved TFLOP/s with FLOPs counted by ASRModel.training_flops (its docstring gives the formula; padded
frames are not counted: useful work only).
"""

import argparse
import itertools
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
from asr.data.batching import collate  # noqa: E402
from asr.data.loader import DurationBatchSampler  # noqa: E402
from asr.features import LogMel, normalize_features, num_frames  # noqa: E402
from asr.text import BLANK, CharTokenizer  # noqa: E402
from asr.training.module import CTCModule  # noqa: E402
from asr.training.precision import auto_precision, model_step_seconds, probe_batches  # noqa: E402
from asr.training.step import manual_step  # noqa: E402

SAMPLE_RATE = 16000
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense fp16/bf16 tensor-core peaks (NVIDIA specs)


def fake_corpus(n: int, seed: int = 0, max_duration: float = 35.0):
    """-> durations (s) and transcripts: random letters and spaces, 15 characters per second."""
    rng = np.random.default_rng(seed)
    durations = np.clip(rng.gamma(4.0, 12.3 / 4.0, n), 1.0, max_duration).tolist()
    return durations, random_texts(durations, rng)


def random_texts(durations, rng) -> list[str]:
    """Random letters and spaces, 15 characters per second of each duration."""
    letters = np.array(list(CharTokenizer.DEFAULT_CHARS.replace("'", "")))
    return ["".join(rng.choice(letters, max(1, int(d * 15)))).strip() or "A" for d in durations]


class PackedBiLSTM(nn.Module):
    """The baseline model: the same subsampling and sizes, one nn.LSTM(bidirectional) per layer on packed
    input, as deepspeech.pytorch's BatchRNN stack (which sums the directions: `merge="sum"`)."""

    def __init__(self, module: CTCModule, cfg):
        super().__init__()
        self.subsample, self.sum = module.model.network.subsample, cfg.merge == "sum"
        self.dropout = nn.Dropout(cfg.dropout)
        h = cfg.hidden
        width = h if self.sum else 2 * h  # each layer's output size
        sizes = [self.subsample.out_dim] + [width] * (cfg.layers - 1)
        self.lstm = nn.ModuleList(nn.LSTM(size, h, bidirectional=True, batch_first=True) for size in sizes)
        self.proj = nn.Linear(width, module.model.vocab_size)

    def forward(self, feats, lengths):
        x, lengths = self.subsample(feats, lengths)
        cpu_lengths = lengths.cpu()  # packing needs them on the host: one sync per step
        for i, lstm in enumerate(self.lstm):
            packed = nn.utils.rnn.pack_padded_sequence(
                self.dropout(x) if i else x, cpu_lengths, batch_first=True, enforce_sorted=False
            )
            out, _ = lstm(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            if self.sum:
                x = x[..., : lstm.hidden_size] + x[..., lstm.hidden_size :]
        return self.proj(x), lengths


NOISE = torch.from_numpy(np.random.default_rng(0).standard_normal(40 * SAMPLE_RATE, dtype=np.float32) * 0.1)


class NoiseUtterances(torch.utils.data.Dataset):
    """What `asr train`'s dataset hands the loader: decoded audio (a slice of one noise buffer), token
    ids and the normalised text; the id is the utterance's index, for the throughput counts."""

    def __init__(self, durations, texts):
        self.durations, self.texts, self.chars = durations, texts, CharTokenizer()

    def __len__(self):
        return len(self.durations)

    def __getitem__(self, i):
        audio = NOISE[: int(self.durations[i] * SAMPLE_RATE)]
        return {"id": i, "audio": audio, "ids": self.chars.encode(self.texts[i]), "text": self.texts[i]}


class BaselineUtterances(NoiseUtterances):
    """As simple recipes do: the log-mel of each utterance computed on the CPU in the dataset."""

    def __init__(self, durations, texts, features):
        super().__init__(durations, texts)
        self.logmel = LogMel(features.n_mels, features.dynamic_range_db)

    def __getitem__(self, i):
        item = super().__getitem__(i)
        with torch.no_grad():
            item["feats"] = self.logmel(item.pop("audio")[None])[0]  # (T, n_mels)
        return item


def baseline_collate(items):
    feats = [it["feats"] for it in items]
    return {
        "feats": nn.utils.rnn.pad_sequence(feats, batch_first=True),
        "frames": torch.tensor([len(f) for f in feats]),
        "targets": nn.utils.rnn.pad_sequence([torch.tensor(it["ids"]) for it in items], batch_first=True),
        "target_lens": torch.tensor([len(it["ids"]) for it in items]),
        "ids": [it["id"] for it in items],
    }


class Vocabulary:
    """Stands in for the config's tokenizer: only its size shapes the model."""

    def __init__(self, config):
        tok = config.tokenizer
        self.vocab_size = CharTokenizer().vocab_size if tok.kind == "char" else tok.vocab_size + 1


def loader(dataset, batches, collate_fn, workers, device):
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate_fn,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )


def optimized_step(config, device, precision):
    """-> (CTCModule on `device`, step(batch)): asr.training.step.manual_step, the training step as Lightning's
    automatic optimisation runs it in `precision` (tests/test_optimizer.py checks it against Trainer.fit)."""
    module = CTCModule(config, Vocabulary(config)).to(device).train()
    return module, manual_step(module, precision)


def run_optimized(config, durations, texts, device, seconds, precision):
    module, step = optimized_step(config, device, precision)
    batches = DurationBatchSampler(
        durations, config.data.max_batch_seconds, seed=0, multiple=config.data.batch_multiple
    )
    data = loader(NoiseUtterances(durations, texts), batches, collate, config.data.num_workers, device)
    return measure(step, data, durations, device, seconds, module)


def run_baseline(config, durations, texts, device, seconds, per_batch):
    module = CTCModule(config, Vocabulary(config))
    model = PackedBiLSTM(module, config.model).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    order = np.random.default_rng(0).permutation(len(durations)).tolist()
    batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]
    dataset = BaselineUtterances(durations, texts, config.features)
    data = loader(dataset, batches, baseline_collate, config.data.num_workers, device)

    def step(batch):
        feats = normalize_features(batch["feats"], batch["frames"]).to(device)
        logits, out_lens = model(feats, batch["frames"].to(device))
        log_probs = F.log_softmax(logits.float(), -1).transpose(0, 1)
        loss = F.ctc_loss(
            log_probs,
            batch["targets"].to(device),
            out_lens,
            batch["target_lens"].to(device),
            blank=BLANK,
            zero_infinity=True,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    return measure(step, data, durations, device, seconds, module)


def measure(step, data, durations, device, seconds, module):
    """Run steps for `seconds` of wall time after 3 warm-up steps -> throughput figures. The counts come
    from the batch's utterance ids, on the host: measuring adds no device sync to the step."""
    batches = (batch for _ in itertools.count() for batch in data)  # epoch after epoch
    for _ in range(3):
        step(next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    audio_s = padded_s = utts = out_frames = steps = multiples_of_8 = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = next(batches)
        step(batch)
        steps += 1
        multiples_of_8 += len(batch["ids"]) % 8 == 0
        lengths = [durations[i] for i in batch["ids"]]
        audio_s, padded_s, utts = audio_s + sum(lengths), padded_s + len(lengths) * max(lengths), utts + len(lengths)
        samples = torch.tensor([int(d * SAMPLE_RATE) for d in lengths])
        out_frames += int(module.model.network.subsample.output_lengths(num_frames(samples)).sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return {
        "x_real_time": audio_s / wall,
        "utts_per_s": utts / wall,
        "padding": 1 - audio_s / padded_s,
        "steps": steps,
        "out_frames_per_s": out_frames / wall,
        "utts_per_batch": utts / steps,
        "batches_multiple_of_8": multiples_of_8 / steps,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else math.nan,
    }


def benchmark(config, device, seconds: float, utterances: int = 4000) -> dict:
    """Both paths on `config` for `seconds` each -> {"precision", "device_name", "optimized": {...},
    "baseline": {...}, "speedup"}, each path's figures as `measure` gives them plus TFLOP/s (and the
    share of the GPU's dense fp16 peak, where known)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    durations, texts = fake_corpus(utterances, max_duration=config.data.max_duration)
    sampler = DurationBatchSampler(durations, config.data.max_batch_seconds, multiple=config.data.batch_multiple)
    precision = config.trainer["precision"]
    if precision == "auto":  # as `asr train` decides it: 16-mixed on a GPU, measured on a CPU (the run's batches)
        model = CTCModule(config, Vocabulary(config)).model.network
        shapes = probe_batches(durations, config.data.max_batch_seconds, multiple=config.data.batch_multiple)
        precision = auto_precision(
            "gpu" if device.type == "cuda" else "cpu",
            lambda bf16: model_step_seconds(model, config.features.n_mels, shapes, bf16),
        )
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    per_batch = max(1, round(len(durations) / len(sampler.batches)))  # baseline: same utterances per step
    results = {
        "precision": precision,
        "device_name": name,
        "mean_utterance_s": float(np.mean(durations)),
        "optimized": run_optimized(config, durations, texts, device, seconds, precision),
        "baseline": run_baseline(config, durations, texts, device, seconds, per_batch),
    }
    module = CTCModule(config, Vocabulary(config))
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    for path in ("optimized", "baseline"):
        r = results[path]
        r["tflops"] = module.model.training_flops(r["out_frames_per_s"], with_char_head=path == "optimized") / 1e12
        r["share_of_peak"] = r["tflops"] / peak if peak else None
    results["speedup"] = results["optimized"]["x_real_time"] / results["baseline"]["x_real_time"]
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "librispeech-960.yaml"))
    p.add_argument("--seconds", type=float, default=60.0, help="measured wall time per path")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--utterances", type=int, default=4000)
    p.add_argument("--override", nargs="*", default=[], help="config overrides, e.g. data.max_batch_seconds=60")
    args = p.parse_args()
    config = load_config(args.config, [f"data.train={args.config}", f"data.val={args.config}", *args.override])
    results = benchmark(config, torch.device(args.device), args.seconds, args.utterances)
    print(
        f"{Path(args.config).name} on {results['device_name']}; {args.seconds:.0f} s per path; mean utterance "
        f"{results['mean_utterance_s']:.1f} s; optimized path in {results['precision']}"
    )
    for path in ("optimized", "baseline"):
        r = results[path]
        share = f" = {100 * r['share_of_peak']:.1f}% of peak" if r["share_of_peak"] else ""
        print(
            f"{path:10s} {r['x_real_time']:9.1f}x real time  {r['utts_per_s']:8.1f} utt/s  padding "
            f"{100 * r['padding']:4.1f}%  {r['steps']:5d} steps  {r['utts_per_batch']:5.1f} utt/batch "
            f"({100 * r['batches_multiple_of_8']:3.0f}% x8)  {r['tflops']:7.2f} TFLOP/s{share}  "
            f"peak mem {r['peak_gib']:.1f} GiB"
        )
    print(f"speed-up: {results['speedup']:.2f}x")


if __name__ == "__main__":
    main()
