"""CPU transcription real-time factor for each config's model size, run by PyTorch and exported to ONNX
(float32 and int8), next to PocketSphinx, on the same files in one run.

    python scripts/bench_transcribe.py [--audio ../shared/data/librispeech-untranscribed] [--threads 2]

For every config in configs/, a model of exactly that config's size (random weights: speed does not
depend on them; greedy decoding) is saved as a checkpoint, exported with `asr export` (and --int8), and
each is run through `asr.transcribe` as a user would run `asr transcribe --model` (audio decoding,
features, network, decoding all timed). PocketSphinx (its PyPI wheel's bundled US English model)
decodes the same files in the same run.
RTF = wall seconds / audio seconds (lower is faster; 0.05 = 20x faster than real time).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from asr.audio import SAMPLE_RATE, load_audio  # noqa: E402
from asr.checkpoint import write_checkpoint  # noqa: E402
from asr.config import load_config  # noqa: E402
from asr.export import export  # noqa: E402
from asr.model import ASRModel  # noqa: E402
from asr.runtime import OnnxNetwork  # noqa: E402
from asr.text import CharTokenizer, SentencePieceTokenizer  # noqa: E402
from asr.training.module import model_dims  # noqa: E402
from asr.transcribe import load_model  # noqa: E402


def checkpoint_for(config_path: Path, out: Path) -> tuple[Path, int]:
    """A checkpoint with the model of `config_path` (random weights) -> (path, parameter count)."""
    config = load_config(config_path, [f"data.train={config_path}", f"data.val={config_path}"])
    if config.tokenizer.kind == "char":
        tokenizer = CharTokenizer()
    else:  # same number of tokens as the config asks for; the pieces themselves do not matter here
        words = [f"W{i:05d}" for i in range(config.tokenizer.vocab_size)]
        tokenizer = SentencePieceTokenizer.train(
            [" ".join(words[i : i + 8]) for i in range(0, len(words), 4)] * 5,
            config.tokenizer.vocab_size,
            config.tokenizer.kind,
        )
    model = ASRModel(model_dims(config, tokenizer.vocab_size))
    path = write_checkpoint(out / f"{config_path.stem}.ckpt", model, tokenizer, config.to_dict())
    return path, sum(p.numel() for p in model.network.parameters())


def pocketsphinx_rtf(paths, audio_seconds: float) -> float:
    from peer_pocketsphinx import pocketsphinx_texts  # this folder: the one PocketSphinx loop both scripts use

    start = time.perf_counter()
    pocketsphinx_texts(paths)
    return (time.perf_counter() - start) / audio_seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio", default=str(ROOT.parent / "shared" / "data" / "librispeech-untranscribed"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", nargs="*", default=sorted(str(c) for c in (ROOT / "configs").glob("*.yaml")))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    paths = sorted(Path(args.audio).rglob("*.flac")) + sorted(Path(args.audio).rglob("*.wav"))
    if not paths:
        sys.exit(f"error: {args.audio}: no .flac or .wav files")
    audio_seconds = sum(len(load_audio(x)) for x in paths) / SAMPLE_RATE
    print(f"{len(paths)} files, {audio_seconds:.0f} s of audio, {args.threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        for config in map(Path, args.configs):
            ckpt, n_params = checkpoint_for(config, Path(tmp))
            for engine in ("PyTorch", "ONNX", "ONNX int8"):
                if engine == "PyTorch":
                    model = load_model(ckpt, "cpu")
                else:
                    folder = export(
                        ckpt, Path(tmp) / f"{config.stem}-{engine[-4:]}", int8="int8" in engine, log=lambda *a: None
                    )
                    model = load_model(folder, "cpu")
                    model.network = OnnxNetwork(folder / "model.onnx", model.frame_samples, "cpu", args.threads)
                model.transcribe_many(paths[:2])  # warm-up: first-call allocations and kernel choices
                start = time.perf_counter()
                results = model.transcribe_many(paths)
                rtf = (time.perf_counter() - start) / audio_seconds
                failed = sum(bool(r.error) for r in results)
                print(
                    f"{config.stem:18s} {n_params / 1e6:6.1f}M params  {engine:9s}  RTF {rtf:.4f}  "
                    f"({1 / rtf:5.1f}x real time)" + (f"  {failed} failed" if failed else ""),
                    flush=True,
                )
    try:
        rtf = pocketsphinx_rtf(paths, audio_seconds)
        print(f"{'pocketsphinx':18s} {'':15s} RTF {rtf:.4f}  ({1 / rtf:5.1f}x real time)")
    except ImportError:
        print("pocketsphinx: not installed (pip install pocketsphinx)")


if __name__ == "__main__":
    main()
