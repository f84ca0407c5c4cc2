"""Decoding throughput: greedy vs beam search (with an LM), in output frames per second, on 1 thread.

    python scripts/bench_decode.py --checkpoint runs/demo/checkpoints/best.ckpt \
        --data data/synth/manifests/test.jsonl --lm data/synth/lm/train-3gram.arpa [--beam-size 50]

The network runs once (not timed), on the emissions `asr evaluate` decodes (long files in windows);
then each decoder decodes the stored emissions of every utterance and the wall time of that loop
alone is reported, with the WER each one gets.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asr.data.manifest import read_manifest  # noqa: E402
from asr.decoding import BeamSearch, greedy  # noqa: E402
from asr.evaluate import scored_emissions  # noqa: E402
from asr.metrics import wer  # noqa: E402
from asr.transcribe import load_model  # noqa: E402


def timed(decode, emissions):
    start = time.perf_counter()
    texts = [decode(e).text for e in emissions]
    return time.perf_counter() - start, texts


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--lm")
    p.add_argument("--lexicon")
    p.add_argument("--beam-size", type=int, default=50)
    p.add_argument("--lm-weight", type=float, default=1.0)
    args = p.parse_args()
    rows = read_manifest(args.data)
    model = load_model(args.checkpoint, "cpu")
    emissions, refs = scored_emissions(model, rows, log=lambda m: print(m, file=sys.stderr))
    frames = sum(len(e) for e in emissions)
    torch.set_num_threads(1)
    start = time.perf_counter()
    beam = BeamSearch(model.tokenizer, args.beam_size, lm=args.lm, lexicon=args.lexicon, lm_weight=args.lm_weight)
    setup = time.perf_counter() - start
    print(
        f"{len(emissions)} utterances, {frames} output frames ({frames * model.frame_samples / 16000:.0f} s of audio)"
    )
    for name, decode in [
        ("greedy", lambda e: greedy(e, model.tokenizer)),
        (f"beam {args.beam_size}" + (f" + {Path(args.lm).name}" if args.lm else ""), beam),
    ]:
        seconds, texts = timed(decode, emissions)
        print(f"{name:40s} {frames / seconds:10.0f} frames/s  ({seconds:.2f} s)  WER {100 * wer(refs, texts):.2f}%")
    print(f"beam decoder set-up (LM load, lexicon trie): {setup:.1f} s")


if __name__ == "__main__":
    main()
