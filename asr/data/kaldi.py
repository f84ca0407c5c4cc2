"""Kaldi data directories (also ESPnet's and Lhotse's export): wav.scp + text -> manifest rows.

Read: `wav.scp` (ID PATH), `text` (ID TRANSCRIPT), and when present `segments` (UTT RECORDING START END,
seconds), `utt2spk`, `spk2gender`, `spk2age`. Paths are absolute or relative to `root`, the folder
the corpus's recipe ran in. A piped entry (`sph2pipe -f wav x.sph |`) is refused, never run: it is a
shell command written in a data file. Utterances whose audio is missing or unreadable are skipped and
counted. Segments are cut out of their recordings once, into 16 kHz FLAC files, so that training,
evaluation and shards all read one utterance per file.
"""

from pathlib import Path

import numpy as np

from asr.data.manifest import probe_all, report_skipped
from asr.errors import ASRError, file_error
from asr.text import normalize


def read_table(path: Path, fields: int = 2, allow_empty: bool = False) -> dict:
    """Kaldi table `KEY VALUE...` -> {key: value} (the rest of the line, or a list when fields > 2).
    `allow_empty`: a key alone on its line maps to "" (a `text` entry with no words)."""
    table = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.strip().split(None, 1 if fields == 2 else fields - 1)
            if not parts:
                continue
            if len(parts) == 1 and allow_empty:
                parts.append("")
            if len(parts) < fields:
                raise ASRError(f"{path}:{lineno}: expected {fields} fields, got {line.strip()!r}")
            if parts[0] in table:
                raise ASRError(f"{path}:{lineno}: {parts[0]} is listed twice")
            table[parts[0]] = parts[1] if fields == 2 else parts[1:]
    return table


def _audio_path(value: str, root: Path, scp: Path, key: str) -> Path:
    if value.endswith("|"):
        raise ASRError(
            f"{scp}: {key}: piped command refused ({value!r}); asr never runs shell commands from a "
            "data file: decode the audio to files first (e.g. with sox) and list their paths"
        )
    if " " in value or ".ark:" in value:
        raise ASRError(f"{scp}: {key}: not a file path ({value!r}); only plain audio file paths are supported")
    path = Path(value)
    return path if path.is_absolute() else root / path


def read_kaldi_dir(data_dir, root=None, segments_out=None, log=print) -> list[dict]:
    """Rows {id, audio, duration, text, speaker[, gender, age]} of a Kaldi data directory, sorted by id.

    `root`: what relative wav.scp paths are relative to (default: the current folder, as in Kaldi).
    `segments_out`: where the cut-out segments go when the directory has a `segments` file.
    """
    data_dir = Path(data_dir)
    root = (Path(root) if root is not None else Path.cwd()).resolve()
    for name in ("wav.scp", "text"):
        if not (data_dir / name).is_file():
            raise file_error(data_dir, f"not a Kaldi data directory (no {name})")
    scp = data_dir / "wav.scp"
    recordings = {key: _audio_path(value, root, scp, key) for key, value in read_table(scp).items()}
    texts = read_table(data_dir / "text", allow_empty=True)
    optional = {
        name: read_table(data_dir / name) if (data_dir / name).is_file() else {}
        for name in ("utt2spk", "spk2gender", "spk2age")
    }
    has_segments = (data_dir / "segments").is_file()
    segments = read_table(data_dir / "segments", fields=4) if has_segments else None

    skipped = []  # (id, path, kind, problem)
    utts = sorted(segments if has_segments else recordings)
    for utt in sorted(set(texts) - set(utts)):
        skipped.append((utt, data_dir / "text", "no audio entry", f"{utt} is in text but not in wav.scp/segments"))
    rows = []
    for utt in utts:
        text = normalize(texts.get(utt, ""))
        if not text:  # CTC cannot train on, nor WER score, an utterance without words
            skipped.append((utt, data_dir / "text", "no transcript", f"{utt} has no text"))
            continue
        speaker = optional["utt2spk"].get(utt, utt)
        row = {"id": utt, "text": text, "speaker": speaker}
        if speaker in optional["spk2gender"]:
            row["gender"] = optional["spk2gender"][speaker]
        if speaker in optional["spk2age"]:
            age = optional["spk2age"][speaker]
            row["age"] = int(age) if age.isdigit() else age
        rows.append(row)

    if has_segments:
        rows = _cut_segments(
            rows, segments, recordings, Path(segments_out or data_dir / "segments-audio"), data_dir, skipped
        )
    else:
        for row, (duration, bad) in zip(rows, probe_all(recordings[r["id"]] for r in rows)):
            row["audio"] = str(recordings[row["id"]])
            if bad:
                skipped.append((row["id"], row["audio"], *bad))
            row["duration"] = duration
        rows = [r for r in rows if r["duration"] is not None]
    report_skipped(data_dir, skipped, len(rows) + len(skipped), log)
    log(f"{data_dir}: {len(rows)} utterances, {sum(r['duration'] for r in rows) / 3600:.2f} h")
    return rows


def _cut_segments(rows, segments, recordings, out_dir: Path, data_dir: Path, skipped) -> list[dict]:
    """Write each segment to out_dir/ID.flac, decoding each recording once; rows gain audio and duration."""
    import soundfile as sf

    from asr.audio import MIN_SAMPLES, SAMPLE_RATE, load_audio

    by_recording = {}
    for row in rows:
        rec, start, end = segments[row["id"]]
        try:
            start, end = float(start), float(end)
        except ValueError:
            raise ASRError(
                f"{data_dir / 'segments'}: {row['id']}: start/end {start!r} {end!r} are not seconds"
            ) from None
        by_recording.setdefault(rec, []).append((row, start, end))
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = []
    for rec, parts in sorted(by_recording.items()):
        if rec not in recordings:
            skipped += [
                (r["id"], data_dir / "segments", "no audio entry", f"recording {rec} is not in wav.scp")
                for r, _, _ in parts
            ]
            continue
        try:
            audio = load_audio(recordings[rec])
        except ASRError as e:
            kind = "missing audio" if not recordings[rec].is_file() else "unreadable"
            skipped += [(r["id"], recordings[rec], kind, str(e)) for r, _, _ in parts]
            continue
        for row, start, end in parts:
            lo, hi = int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE)) if end > 0 else len(audio)
            clip = audio[lo : min(hi, len(audio))]  # Kaldi's end -1 means "to the end of the recording"
            if len(clip) < MIN_SAMPLES:
                skipped.append((row["id"], recordings[rec], "empty segment", f"{start}-{end} s holds no audio"))
                continue
            path = out_dir / f"{row['id']}.flac"
            sf.write(path, np.clip(clip, -1, 1), SAMPLE_RATE, format="FLAC")
            kept.append(
                {
                    **row,
                    "audio": str(path.resolve()),
                    "duration": round(len(clip) / SAMPLE_RATE, 4),
                    "recording": rec,
                    "start": start,
                }
            )
    return sorted(kept, key=lambda r: r["id"])


def prepare_kaldi(data_dir, out, root=None, log=print) -> Path:
    """`asr prepare kaldi`: write the manifest `out` for the Kaldi data directory `data_dir`."""
    from asr.data.manifest import write_manifest

    out = Path(out)
    rows = read_kaldi_dir(data_dir, root, segments_out=out.parent / f"{out.stem}-segments", log=log)
    if not rows:
        raise file_error(data_dir, "no usable utterances")
    return write_manifest(out, rows)
