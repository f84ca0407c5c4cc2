"""Transcripts as text, JSON, TSV and subtitles (SRT, WebVTT).

Subtitles need segments, not words: words are grouped into lines that break at pauses and are
capped in length and duration, the way subtitle guidelines ask (about 42 characters, 7 seconds).
"""

import json
from pathlib import Path

from asr.decoding import Word
from asr.errors import ASRError

FORMATS = ("text", "json", "tsv", "srt", "vtt")
PAUSE_S = 0.6  # a silence this long between words starts a new segment
MAX_SEGMENT_S = 7.0
MAX_SEGMENT_CHARS = 42


def segments(words: list[Word]) -> list[tuple[float, float, str]]:
    """Timed words -> (start, end, text) subtitle segments."""
    out, current = [], []
    for w in words:
        if current:
            text = " ".join(x.word for x in current + [w])
            if (
                w.start - current[-1].end > PAUSE_S
                or w.end - current[0].start > MAX_SEGMENT_S
                or len(text) > MAX_SEGMENT_CHARS
            ):
                out.append((current[0].start, current[-1].end, " ".join(x.word for x in current)))
                current = []
        current.append(w)
    if current:
        out.append((current[0].start, current[-1].end, " ".join(x.word for x in current)))
    return out


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def to_srt(words: list[Word]) -> str:
    blocks = [
        f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{text}\n"
        for i, (a, b, text) in enumerate(segments(words), 1)
    ]
    return "\n".join(blocks)


def to_vtt(words: list[Word]) -> str:
    blocks = [f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{text}\n" for a, b, text in segments(words)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_tsv(words: list[Word]) -> str:
    """One word per line: start and end in milliseconds (as whisper's TSV), word, confidence."""
    lines = ["start\tend\tword\tconfidence"]
    lines += [f"{round(w.start * 1000)}\t{round(w.end * 1000)}\t{w.word}\t{w.confidence:.3f}" for w in words]
    return "\n".join(lines) + "\n"


def render(result, fmt: str) -> str:
    """A transcribe Result -> the text of one output file in `fmt`."""
    if fmt == "json":
        return json.dumps(result.as_dict()) + "\n"
    if fmt == "text":
        return result.text + "\n"
    return {"tsv": to_tsv, "srt": to_srt, "vtt": to_vtt}[fmt](result.words)


def check_output_names(paths, out_dir: Path) -> None:
    """One output per input, named by its stem: two inputs must not share one."""
    stems = {}
    for path in paths:
        if (other := stems.setdefault(Path(path).stem, path)) != path:
            raise ASRError(f"{path}: same name as {other}: both would write {Path(path).stem}.* in {out_dir}")


def write_output(result, fmt: str, out_dir: Path) -> Path:
    """OUT_DIR/STEM.{txt,json,tsv,srt,vtt} for one transcribe Result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{Path(result.path).stem}.{ {'text': 'txt'}.get(fmt, fmt) }"
    path.write_text(render(result, fmt))
    return path
