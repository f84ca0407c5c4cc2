"""A peer on the same files: PocketSphinx (its bundled US English acoustic model and LM) beside an asr
checkpoint, in one run: WER, CER and CPU real-time factor on every Nth utterance of a manifest.

    pip install pocketsphinx==5.1.1
    python scripts/peer_pocketsphinx.py --data data/speechocean762/test.jsonl \\
        --checkpoint runs/speechocean762/checkpoints/best.ckpt --every 10

Both sides are scored with asr's own normalisation and jiwer. RTF = wall seconds / audio seconds,
with audio decoding counted for both; PocketSphinx runs on one thread (it has no other mode), asr on
--threads. Writes nothing; prints one line per system.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from asr.audio import SAMPLE_RATE, load_audio  # noqa: E402
from asr.data.manifest import read_manifest  # noqa: E402
from asr.metrics import error_counts  # noqa: E402
from asr.text import normalize  # noqa: E402


def pocketsphinx_texts(paths) -> list[str]:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    texts = []
    for path in paths:
        pcm = (load_audio(path).clip(-1, 1) * 32767).astype("<i2").tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        texts.append(hyp.hypstr if hyp is not None else "")
    return texts


def asr_texts(checkpoint, paths) -> list[str]:
    from asr.transcribe import load_model

    results = load_model(checkpoint, "cpu").transcribe_many(paths, decoder="greedy")
    return [r.text for r in results]


def report(name, refs, hyps, seconds, audio_seconds) -> str:
    word_err, words, char_err, chars = error_counts(refs, [normalize(h) for h in hyps])
    return (
        f"{name:14s} WER {100 * word_err / words:6.2f}%  CER {100 * char_err / chars:6.2f}%  "
        f"RTF {seconds / audio_seconds:.4f}"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="manifest (.jsonl) with transcripts")
    p.add_argument("--checkpoint", help="an asr checkpoint to run on the same files (greedy decoding)")
    p.add_argument("--every", type=int, default=10, help="every Nth utterance (1: all)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for asr")
    args = p.parse_args()
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        sys.exit("error: pocketsphinx is not installed: pip install pocketsphinx==5.1.1")
    import torch

    torch.set_num_threads(args.threads)
    rows = read_manifest(args.data)[:: args.every]
    paths, refs = [r["audio"] for r in rows], [normalize(r["text"]) for r in rows]
    audio_seconds = sum(r["duration"] for r in rows)
    print(f"{args.data}: {len(rows)} utterances (every {args.every}), {audio_seconds / 60:.1f} min of audio")
    systems = [("pocketsphinx", pocketsphinx_texts)]
    if args.checkpoint:
        systems.append(("asr (greedy)", lambda ps: asr_texts(args.checkpoint, ps)))
    for name, run in systems:
        start = time.perf_counter()
        hyps = run(paths)
        print(report(name, refs, hyps, time.perf_counter() - start, audio_seconds), flush=True)


if __name__ == "__main__":
    main()
