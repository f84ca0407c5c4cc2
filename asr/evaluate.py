"""`asr evaluate`: WER and CER with jiwer, after `asr.text.normalize` on both sides.

Writes `utterances.jsonl` (id, audio, reference, hypothesis, per-utterance errors, or the error that
stopped a file) and `summary.json` (corpus WER/CER, counts, failures) to the output folder.
"""
import json
from pathlib import Path

from asr.data.manifest import read_manifest, write_manifest
from asr.errors import ASRError
from asr.lightning import error_counts
from asr.text import normalize
from asr.transcribe import Recognizer, transcribe_files


def read_eval_data(data) -> list[dict]:
    """A manifest (.jsonl), a folder with a manifest.jsonl, or a LibriSpeech-layout folder -> rows."""
    data = Path(data)
    if data.is_file():
        return read_manifest(data)
    if not data.is_dir():
        raise ASRError(f"{data}: no such manifest or folder")
    if (data / "manifest.jsonl").is_file():
        return read_manifest(data / "manifest.jsonl")
    from asr.data.librispeech import scan_librispeech

    return scan_librispeech(data)


def evaluate(recognizer: Recognizer, rows: list[dict], out_dir, log=print) -> dict:
    out_dir = Path(out_dir)
    results = transcribe_files(recognizer, [r["audio"] for r in rows])
    per_utt, refs, hyps, failed = [], [], [], []
    for row, res in zip(rows, results):
        ref, hyp = normalize(row["text"]), normalize(res.text)
        entry = {"id": row["id"], "audio": row["audio"], "reference": ref, "hypothesis": hyp}
        if res.error:
            failed.append(res.error)
            entry["error"] = res.error
        elif ref:
            refs.append(ref)
            hyps.append(hyp)
            entry["word_errors"], entry["words"], entry["char_errors"], entry["chars"] = error_counts([ref], [hyp])
        per_utt.append(entry)
    word_err, words, char_err, chars = error_counts(refs, hyps)
    summary = {
        "wer": word_err / max(words, 1), "cer": char_err / max(chars, 1),
        "utterances": len(refs), "words": words, "word_errors": word_err, "chars": chars, "char_errors": char_err,
        "failed": len(failed), "failures": failed,
        "normalization": "asr.text.normalize: ASCII, upper case, punctuation removed except in-word apostrophes",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(out_dir / "utterances.jsonl", per_utt)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for error in failed:
        log(f"failed: {error}")
    return summary
