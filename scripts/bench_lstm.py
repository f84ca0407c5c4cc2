"""Packed nn.LSTM(bidirectional) vs our padding-exact BiLSTM layers, forward + backward.

Both give each utterance exactly the outputs it would get alone; this measures what that costs.
    python scripts/bench_lstm.py [--device cpu|cuda] [--batch 12] [--frames 85] [--hidden 256] [--layers 3]
        [--dtype fp32|bf16|fp16]   (bf16/fp16: under autocast, as `precision: bf16-mixed|16-mixed` trains)
"""

import argparse
import contextlib
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.model import BiLSTMLayer


def timed(fn, device, repeats):
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--frames", type=int, default=85)  # 3.4 s at 25 frames/s (x4 subsampling)
    p.add_argument("--input", type=int, default=320)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    a = p.parse_args()
    torch.manual_seed(0)
    x = torch.randn(a.batch, a.frames, a.input, device=a.device, requires_grad=True)
    lengths = torch.randint(int(a.frames * 0.9), a.frames + 1, (a.batch,))  # duration-bucketed: ~5% padding
    lengths[0] = a.frames
    packed_lstm = torch.nn.LSTM(a.input, a.hidden, a.layers, bidirectional=True, batch_first=True).to(a.device)
    sizes = [a.input] + [2 * a.hidden] * (a.layers - 1)
    ours = torch.nn.ModuleList(BiLSTMLayer(s, a.hidden) for s in sizes).to(a.device)

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.dtype)
    autocast = (lambda: torch.autocast(a.device, dtype=dtype)) if dtype else contextlib.nullcontext

    def run_packed():
        with autocast():
            out, _ = packed_lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        pad_packed_sequence(out, batch_first=True)[0].float().sum().backward()

    def run_ours():
        h = x
        with autocast():
            for layer in ours:
                h = layer(h, lengths)
        h.float().sum().backward()

    t_packed, t_ours = timed(run_packed, a.device, a.repeats), timed(run_ours, a.device, a.repeats)
    print(
        f"device={a.device} dtype={a.dtype} threads={torch.get_num_threads()} batch={a.batch} frames={a.frames} "
        f"hidden={a.hidden} layers={a.layers}"
    )
    print(
        f"packed nn.LSTM: {1000 * t_packed:.1f} ms/step   padding-exact layers: {1000 * t_ours:.1f} ms/step   "
        f"speed-up {t_packed / t_ours:.2f}x"
    )


if __name__ == "__main__":
    main()
