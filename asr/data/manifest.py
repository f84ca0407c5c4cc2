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
