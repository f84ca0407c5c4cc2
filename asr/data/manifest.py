"""JSONL manifests: one utterance per line.

Each row has `id`, `audio` (a path, absolute or relative to the manifest's folder), `duration`
(seconds), `text` and `speaker`. Rows written by other tools (e.g. the shared real-speech
manifest) need only `audio` and `text`; the rest is filled in when read.
"""

import json
from pathlib import Path

from asr.errors import ASRError, file_error


def write_manifest(path, rows) -> Path:
    """Write rows atomically (a temp file renamed into place) so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def _duration_or_zero(audio: Path) -> float:
    """Duration from the file header for rows that lack one; 0 for unreadable files, which the
    readers downstream report by name when they try to decode them."""
    from asr.audio import audio_duration

    try:
        return audio_duration(audio)
    except ASRError:
        return 0.0


def read_manifest(path) -> list[dict]:
    """Read a manifest; audio paths come back absolute. Raises ASRError on a bad line."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "manifest not found")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                audio = Path(row["audio"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ASRError(f"{path}:{lineno}: not a manifest row ({e})") from None
            if not audio.is_absolute():
                audio = path.parent / audio
            row["audio"] = str(audio)
            row.setdefault("id", audio.stem)
            row.setdefault("text", "")
            row.setdefault("speaker", "")
            if not isinstance(row["text"], str):
                raise ASRError(f"{path}:{lineno}: text is {type(row['text']).__name__}, not a string")
            if not isinstance(row.get("duration"), (int, float)):
                row["duration"] = _duration_or_zero(audio)
            rows.append(row)
    if not rows:
        raise file_error(path, "manifest is empty")
    return rows


def probe_audio(path: Path):
    """(duration, None) or (None, (kind, problem)) for one audio file, from its header."""
    from asr.audio import audio_duration

    if not path.is_file():
        return None, ("missing audio", "audio file not found")
    try:
        duration = audio_duration(path)
    except Exception as e:  # any decoder failure means the same thing here: unusable audio
        problem = str(e).removeprefix(f"{path}: ") if isinstance(e, ASRError) else f"{type(e).__name__}: {e}"
        return None, ("unreadable", problem)
    if not duration > 0:
        return None, ("zero duration", "audio has no samples")
    return duration, None


def probe_all(paths, workers: int = 16) -> list:
    """probe_audio over many files. Header reads are I/O bound (281k files for LibriSpeech 960 h):
    threads overlap the disk latency; map() in chunks keeps the pending futures bounded."""
    from concurrent.futures import ThreadPoolExecutor

    paths, out = list(paths), []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i in range(0, len(paths), 4096):
            out += pool.map(probe_audio, paths[i : i + 4096])
    return out


def report_skipped(source, skipped, total: int, log=print) -> None:
    """One line: how many of `total` utterances were skipped, counted by kind, and the first one.
    `skipped` holds (id, path, kind, problem) tuples."""
    if not skipped:
        return
    skipped = sorted(skipped, key=lambda s: s[0])
    counts = {}
    for _, _, kind, _ in skipped:
        counts[kind] = counts.get(kind, 0) + 1
    first = skipped[0]
    log(
        f"{source}: skipped {len(skipped)} of {total} utterances: "
        + ", ".join(f"{n} {kind}" for kind, n in counts.items())
        + f" (first: {first[1]}: {first[3]})"
    )
