"""`asr evaluate`: WER and CER with jiwer, after `asr.text.normalize` on both sides.

Writes `utterances.jsonl` (id, audio, reference, hypothesis, per-utterance errors, or the error that
stopped a file) and `summary.json` (corpus WER/CER, counts, failures, the most frequent word errors,
WER by any manifest field asked for) to the output folder, and `by-FIELD.tsv` for each such field.
"""

import dataclasses
import json
from pathlib import Path

from asr.data.manifest import read_manifest, write_manifest
from asr.decoding import DecodingOptions
from asr.errors import ASRError
from asr.metrics import error_counts, wer
from asr.runs import REPORT
from asr.runtime import fingerprint
from asr.text import normalize
from asr.transcribe import Model


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


def evaluate(
    model: Model,
    rows: list[dict],
    out_dir,
    options: DecodingOptions | None = None,
    by=(),
    log=print,
    data: str | None = None,
) -> dict:
    """Transcribe `rows` and score them; `by`: manifest fields to break the WER down by (e.g. speaker).
    `data`: what the rows were read from, recorded in summary.json with the model's path and sha256 (so
    `asr export` can put the score in the model card)."""
    for field in by:  # checked first: a typo would otherwise put every utterance under "(none)"
        if not any(field in row for row in rows):
            raise ASRError(
                f"--by {field}: no utterance in the data has this field "
                f"(fields: {', '.join(sorted({k for row in rows for k in row}))})"
            )
    out_dir = Path(out_dir)
    results = model.transcribe_many([r["audio"] for r in rows], options, word_timestamps=False)
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
        "wer": word_err / words if words else None,
        "cer": char_err / chars if chars else None,  # None: nothing scored
        "utterances": len(refs),
        "words": words,
        "word_errors": word_err,
        "chars": chars,
        "char_errors": char_err,
        "failed": len(failed),
        "failures": failed,
        "top_errors": top_errors(refs, hyps),
        "normalization": "asr.text.normalize: ASCII, upper case, punctuation removed except in-word apostrophes",
        "data": data,
        "decoding": dataclasses.asdict(options or DecodingOptions()),
        "model": {"path": model.source, "sha256": fingerprint(model.source) if model.source else None},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    summary["by"] = {}
    for field in by:
        summary["by"][field] = table = breakdown(rows, per_utt, field)
        lines = [f"{field}\twer\tcer\tutterances\twords"] + [
            f"{value}\t{g['wer']:.4f}\t{g['cer']:.4f}\t{g['utterances']}\t{g['words']}" for value, g in table.items()
        ]
        (out_dir / f"by-{field}.tsv").write_text("\n".join(lines) + "\n")
    write_manifest(out_dir / "utterances.jsonl", per_utt)
    (out_dir / REPORT).write_text(json.dumps(summary, indent=2) + "\n")
    for error in failed:
        log(f"failed: {error}")
    return summary


def breakdown(rows, per_utt, field) -> dict:
    """{value of `field`: {wer, cer, utterances, words}} over the scored utterances, sorted by value.
    Rows without the field count under "(none)"."""
    groups = {}
    for row, entry in zip(rows, per_utt):
        if "word_errors" in entry:
            groups.setdefault(str(row.get(field, "(none)")), []).append(entry)
    table = {}
    for value in sorted(groups):
        g = groups[value]
        words, chars = sum(e["words"] for e in g), sum(e["chars"] for e in g)
        table[value] = {
            "wer": sum(e["word_errors"] for e in g) / max(words, 1),
            "cer": sum(e["char_errors"] for e in g) / max(chars, 1),
            "utterances": len(g),
            "words": words,
        }
    return table


def top_errors(refs, hyps, n: int = 10) -> dict:
    """The `n` most frequent word substitutions [ref, hyp, count], deletions and insertions [word, count],
    counted word by word (jiwer's own counts join neighbouring errors into one multi-word entry)."""
    from collections import Counter

    import jiwer

    if not refs:
        return {"substitutions": [], "deletions": [], "insertions": []}
    aligned = jiwer.process_words(refs, hyps)
    subs, dels, ins = Counter(), Counter(), Counter()
    for ref, hyp, chunks in zip(aligned.references, aligned.hypotheses, aligned.alignments):
        for chunk in chunks:
            ref_words = ref[chunk.ref_start_idx : chunk.ref_end_idx]
            hyp_words = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
            if chunk.type == "substitute":  # as many words on each side
                subs.update(zip(ref_words, hyp_words))
            elif chunk.type == "delete":
                dels.update(ref_words)
            elif chunk.type == "insert":
                ins.update(hyp_words)
    most = lambda counts: sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return {
        "substitutions": [[ref, hyp, c] for (ref, hyp), c in most(subs)],
        "deletions": [[w, c] for w, c in most(dels)],
        "insertions": [[w, c] for w, c in most(ins)],
    }


def breakdown_lines(summary: dict) -> list[str]:
    """WER per value of each `by` field (the spread when there are many), then the commonest word errors."""
    lines = []
    for field, table in summary["by"].items():
        if len(table) <= 12:
            lines += [
                f"  {field} {value}: WER {100 * g['wer']:.2f}%  CER {100 * g['cer']:.2f}%  "
                f"({g['utterances']} utterances, {g['words']} words)"
                for value, g in table.items()
            ]
        else:
            lines.append(
                f"  {field}: {len(table)} values, WER {spread([g['wer'] for g in table.values()])} (by-{field}.tsv)"
            )
    top = summary["top_errors"]
    if top["substitutions"]:
        lines.append("  most frequent substitutions: " + ", ".join(f"{r}->{h} {c}" for r, h, c in top["substitutions"]))
    lines += [
        f"  most frequent {kind}: " + ", ".join(f"{w} {c}" for w, c in top[kind])
        for kind in ("deletions", "insertions")
        if top[kind]
    ]
    return lines


def spread(values: list[float]) -> str:
    """min / quartiles / max of per-group WERs, for a field with many values (speakers)."""
    import numpy as np

    q = np.percentile(values, [0, 25, 50, 75, 100])
    return " / ".join(f"{name} {100 * v:.1f}%" for name, v in zip(("min", "25%", "median", "75%", "max"), q))


def scored_emissions(model: Model, rows: list[dict], log=print) -> tuple[list, list[str]]:
    """(T', V) emissions, as evaluate decodes them, and the normalised reference of each readable row;
    unreadable rows are logged and left out."""
    emissions, refs, in_order = [], [], iter(rows)

    def keep(path, logits, seconds, error):  # called once per row, in order
        row = next(in_order)
        if error:
            log(f"skipped: {error}")
        else:
            emissions.append(logits)
            refs.append(normalize(row["text"]))

    model.file_emissions([row["audio"] for row in rows], keep)
    return emissions, refs


def tune_lm(
    model: Model,
    rows: list[dict],
    lm,
    lexicon=None,
    lm_weights=(0.5, 1.0, 1.5, 2.0, 3.0),
    word_scores=(-1.0, 0.0, 1.0, 2.0),
    beam_size: int = 50,
    log=print,
) -> dict:
    """Grid-search LM weight and word score on `rows` (a dev set). The network runs once, on the same
    emissions `evaluate` decodes (long files in windows); each trial only re-runs the beam search over
    them. Returns the table and the best."""
    from asr.decoding import BeamSearch

    emissions, refs = scored_emissions(model, rows, log)
    if not emissions:
        raise ASRError("tune-lm: no readable utterances in the data")
    if not any(refs):  # every WER would be 0 errors in 0 words
        raise ASRError("tune-lm: no utterance in the data has a transcript to score against")
    greedy = model.decoder(DecodingOptions(decoder="greedy"))
    greedy_wer = wer(refs, [greedy(e).text for e in emissions])
    log(f"greedy: WER {100 * greedy_wer:.2f}%")
    base = BeamSearch(model.tokenizer, beam_size, lm=lm, lexicon=lexicon)
    table = []
    for weight in lm_weights:
        for score in word_scores:
            search = base.with_weights(weight, score)
            trial = wer(refs, [search(e).text for e in emissions])
            table.append({"lm_weight": weight, "word_score": score, "wer": trial})
            log(f"lm_weight {weight:5.2f}  word_score {score:5.2f}  WER {100 * trial:.2f}%")
    best = min(table, key=lambda r: r["wer"])
    return {"greedy_wer": greedy_wer, "table": table, "best": best, "utterances": len(refs)}


def word_time_errors(words, truth) -> list[float]:
    """|start - true start| and |end - true end|, in seconds, for each hypothesis word that lines up
    with a reference word (difflib matching blocks); `truth` is a manifest's [[WORD, start, end], ...]."""
    import difflib

    hyp, ref = [w.word for w in words], [t[0] for t in truth]
    errors = []
    for block in difflib.SequenceMatcher(a=hyp, b=ref, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            w, (_, start, end) = words[block.a + k], truth[block.b + k]
            errors += [abs(w.start - start), abs(w.end - end)]
    return errors
