"""The `asr` command. Parses arguments, calls the library, prints. No logic of its own."""
import argparse
import json
import logging
import sys
from pathlib import Path

from asr.errors import ASRError


def cmd_prepare(args):
    if args.corpus == "librispeech":
        from asr.data.librispeech import prepare_librispeech

        subsets = [s.strip() for s in args.subsets.split(",") if s.strip()]
        manifests = prepare_librispeech(args.root, subsets, download=args.download, out_dir=args.out)
    else:
        from asr.data.fsdd import prepare_fsdd

        manifests = prepare_fsdd(args.root, args.out, test_speaker=args.test_speaker)
    for name, path in manifests.items():
        print(f"{name}\t{path}")


def cmd_synth(args):
    from asr.data.synth import synthesize_corpus

    manifests = synthesize_corpus(args.out, train_utts=args.train_utts, dev_utts=args.dev_utts,
                                  test_utts=args.test_utts, vocab_size=args.vocab_size, seed=args.seed,
                                  workers=args.workers)
    for name, path in manifests.items():
        print(f"{name}\t{path}")


def cmd_train(args):
    from asr.config import load_config
    from asr.train import train

    best = train(load_config(args.config, args.overrides), resume=args.resume)
    print(f"best checkpoint: {best}")


def cmd_evaluate(args):
    from asr.evaluate import evaluate, read_eval_data
    from asr.transcribe import Recognizer

    recognizer = Recognizer(args.checkpoint, args.device)
    rows = read_eval_data(args.data)
    out = args.out or Path(args.checkpoint).resolve().parent.parent / f"eval-{Path(args.data).stem}"
    summary = evaluate(recognizer, rows, out, log=lambda m: print(m, file=sys.stderr))
    print(f"WER {100 * summary['wer']:.2f}%  CER {100 * summary['cer']:.2f}%  "
          f"({summary['utterances']} utterances, {summary['words']} words, {summary['failed']} failed)  -> {out}")
    if summary["failed"] and (args.strict or not summary["utterances"]):
        sys.exit(1)


def cmd_transcribe(args):
    from asr.transcribe import Recognizer, transcribe_files

    recognizer = Recognizer(args.checkpoint, args.device)

    def show(result):
        if args.format == "json":
            print(json.dumps({k: v for k, v in vars(result).items() if v != "" or k == "text"}), flush=True)
        elif not result.error:
            print(result.text if len(args.files) == 1 else f"{result.path}\t{result.text}", flush=True)
        if result.error:
            print(f"error: {result.error}", file=sys.stderr, flush=True)

    results = transcribe_files(recognizer, args.files, on_result=show)
    failed = [r for r in results if r.error]
    if failed and len(args.files) > 1:
        print(f"{len(failed)} of {len(results)} files failed", file=sys.stderr)
    if failed and (args.strict or len(failed) == len(results)):
        sys.exit(1)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr", description="CTC speech recognition: prepare data, train, evaluate, transcribe.")
    sub = p.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare", help="write JSONL manifests for a corpus")
    prep_sub = prep.add_subparsers(dest="corpus", required=True)
    ls = prep_sub.add_parser("librispeech", help="LibriSpeech subsets (or any LibriSpeech-layout folder)")
    ls.add_argument("--root", required=True, help="folder holding LibriSpeech/ (downloads go here)")
    ls.add_argument("--subsets", default="train-clean-100,dev-clean,test-clean",
                    help="comma-separated official subset names or paths to LibriSpeech-layout folders")
    ls.add_argument("--download", action="store_true", help="download missing subsets from OpenSLR (resumable, MD5-checked)")
    ls.add_argument("--out", help="where manifests go (default: ROOT/manifests)")
    fsdd = prep_sub.add_parser("fsdd", help="Free Spoken Digit Dataset, one speaker held out for test")
    fsdd.add_argument("--root", required=True, help="folder of FSDD wav files")
    fsdd.add_argument("--out", required=True, help="where manifests go")
    fsdd.add_argument("--test-speaker", default="theo")
    prep.set_defaults(func=cmd_prepare)

    syn = sub.add_parser("synth", help="synthesise the offline English corpus (espeak-ng) in LibriSpeech layout")
    syn.add_argument("--out", required=True)
    syn.add_argument("--train-utts", type=int, default=4000)
    syn.add_argument("--dev-utts", type=int, default=200)
    syn.add_argument("--test-utts", type=int, default=300)
    syn.add_argument("--vocab-size", type=int, default=3000)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--workers", type=int, default=2)
    syn.set_defaults(func=cmd_synth)

    tr = sub.add_parser("train", help="train a model from a YAML config")
    tr.add_argument("--config", required=True)
    tr.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoints/last.ckpt")
    tr.add_argument("overrides", nargs="*", help="config overrides, e.g. model.hidden=512 trainer.max_epochs=10")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="WER/CER on a manifest or a LibriSpeech-layout folder")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--data", required=True, help="manifest .jsonl, folder with manifest.jsonl, or LibriSpeech-layout folder")
    ev.add_argument("--out", help="report folder (default: next to the checkpoint's run)")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--strict", action="store_true", help="exit non-zero if any file failed")
    ev.set_defaults(func=cmd_evaluate)

    tc = sub.add_parser("transcribe", help="print the transcript of audio files")
    tc.add_argument("--checkpoint", required=True)
    tc.add_argument("files", nargs="+")
    tc.add_argument("--format", choices=["text", "json"], default="text")
    tc.add_argument("--device", default="auto")
    tc.add_argument("--strict", action="store_true", help="exit non-zero if any file failed")
    tc.set_defaults(func=cmd_transcribe)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("asr").setLevel(logging.INFO)
    try:
        args.func(args)
    except ASRError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
